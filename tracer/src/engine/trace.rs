//! Who did something, and where: the [`TaskRef`] of an event, and the [`Trace`] the engine
//! keeps of the first event that set a usage bit or added a dependency (lockdep keeps a stack
//! trace of each), for reports to show how a class got there.

use serde::Serialize;

use crate::fact::FactRecord;
use crate::symbols::StackKey;

/// A task, as the events name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskRef {
    /// The recording it was seen in (0 unless several are merged): its pid means something
    /// there only, and its stacks and call sites are named by that recording's symbols.
    pub recording: u16,
    /// `comm`, NUL-padded.
    pub comm: [u8; 16],
    /// Thread-group id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
}

impl TaskRef {
    /// The task of a fact of `recording`.
    pub fn of(fact: &FactRecord, recording: u16) -> TaskRef {
        TaskRef {
            recording,
            comm: fact.comm,
            pid: fact.pid,
            tid: fact.tid,
        }
    }

    /// The `comm` as text (lossy for non-UTF-8 bytes).
    pub fn comm(&self) -> String {
        let len = self.comm.iter().position(|&b| b == 0).unwrap_or(16);
        String::from_utf8_lossy(&self.comm[..len]).into_owned()
    }
}

impl std::fmt::Display for TaskRef {
    /// lockdep's `comm/pid` (the thread id, as `task_pid_nr` gives).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.comm(), self.tid)
    }
}

impl Serialize for TaskRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("TaskRef", 3)?;
        st.serialize_field("comm", &self.comm())?;
        st.serialize_field("pid", &self.pid)?;
        st.serialize_field("tid", &self.tid)?;
        st.end()
    }
}

/// An acquisition as the engine remembers it: the first one that set a usage bit of a class,
/// or that added a dependency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trace {
    /// The acquiring task.
    pub task: TaskRef,
    /// The acquisition site (the lock function's caller).
    pub caller: u64,
    /// The stack of the acquisition, when one was taken.
    pub stack: Option<StackKey>,
}
