//! Kernel symbol tables in the `/proc/kallsyms` and `System.map` format
//! (`address type name [module]`), looked up by address.

use std::path::Path;

/// One kernel symbol.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KernelSymbol {
    /// Start address.
    pub addr: u64,
    /// The `nm`-style type letter: `t`/`T` text, `d`/`D`/`b`/`B`/`r`/`R` data.
    pub kind: char,
    /// Symbol name.
    pub name: String,
    /// Module name for module symbols.
    pub module: Option<String>,
}

impl KernelSymbol {
    /// True for data symbols (static variables: where static locks live).
    pub fn is_data(&self) -> bool {
        matches!(self.kind.to_ascii_lowercase(), 'd' | 'b' | 'r' | 'g' | 's')
    }

    /// True for text (code) symbols.
    pub fn is_text(&self) -> bool {
        matches!(self.kind.to_ascii_lowercase(), 't' | 'w')
    }
}

/// A kernel symbol table sorted by address.
#[derive(Clone, Debug, Default)]
pub struct KernelSymbols {
    symbols: Vec<KernelSymbol>,
}

/// Fewer data symbols than this means only section markers (see
/// [`KernelSymbols::has_data_symbols`]); a kernel with `CONFIG_KALLSYMS_ALL` has tens of
/// thousands.
pub const MIN_DATA_SYMBOLS: usize = 1000;

/// The largest distance from a data symbol's start at which an address is still attributed to
/// it. kallsyms has no sizes; locks live near the start of small static objects, and a struct
/// holding a lock is rarely larger than this.
const MAX_DATA_OFFSET: u64 = 64 * 1024;

impl KernelSymbols {
    /// Builds a table from symbols in any order.
    pub fn from_symbols(mut symbols: Vec<KernelSymbol>) -> KernelSymbols {
        symbols.sort_by(|a, b| a.addr.cmp(&b.addr).then_with(|| a.name.cmp(&b.name)));
        symbols.dedup_by(|a, b| a.addr == b.addr && a.name == b.name);
        KernelSymbols { symbols }
    }

    /// Parses kallsyms/System.map text. Lines that do not parse are skipped; all-zero
    /// addresses (what an unprivileged reader sees) are dropped.
    pub fn parse(text: &str) -> KernelSymbols {
        let symbols = text
            .lines()
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                let addr = u64::from_str_radix(fields.next()?, 16).ok()?;
                let kind = fields.next()?.chars().next()?;
                let name = fields.next()?.to_string();
                let module = fields
                    .next()
                    .map(|m| m.trim_start_matches('[').trim_end_matches(']').to_string());
                (addr != 0).then_some(KernelSymbol {
                    addr,
                    kind,
                    name,
                    module,
                })
            })
            .collect();
        KernelSymbols::from_symbols(symbols)
    }

    /// Reads and parses a kallsyms or System.map file.
    pub fn load(path: &Path) -> std::io::Result<KernelSymbols> {
        Ok(KernelSymbols::parse(&std::fs::read_to_string(path)?))
    }

    /// True when the kallsyms or System.map text `text` lists a symbol called `name` (of any
    /// type), found without building the table.
    pub fn lists(text: &str, name: &str) -> bool {
        text.lines()
            .any(|line| line.split_whitespace().nth(2) == Some(name))
    }

    /// All symbols, sorted by address.
    pub fn symbols(&self) -> &[KernelSymbol] {
        &self.symbols
    }

    /// Number of symbols.
    pub fn len(&self) -> usize {
        self.symbols.len()
    }

    /// True when the table is empty.
    pub fn is_empty(&self) -> bool {
        self.symbols.is_empty()
    }

    /// True when the table has data symbols (kallsyms with `CONFIG_KALLSYMS_ALL`, or a
    /// System.map), so static locks can be named. Without `CONFIG_KALLSYMS_ALL` kallsyms still
    /// lists a few dozen section markers (`__start_rodata` ...) as data; those name nothing, so
    /// a real table is one with at least [`MIN_DATA_SYMBOLS`].
    pub fn has_data_symbols(&self) -> bool {
        self.symbols.iter().filter(|s| s.is_data()).count() >= MIN_DATA_SYMBOLS
    }

    /// The symbol at or below `addr`, with the offset of `addr` from it.
    pub fn lookup(&self, addr: u64) -> Option<(&KernelSymbol, u64)> {
        let idx = self.symbols.partition_point(|s| s.addr <= addr);
        let sym = self.symbols.get(idx.checked_sub(1)?)?;
        Some((sym, addr - sym.addr))
    }

    /// The function containing `addr`, with the offset into it.
    pub fn function(&self, addr: u64) -> Option<(&KernelSymbol, u64)> {
        self.lookup(addr).filter(|(sym, _)| sym.is_text())
    }

    /// The static variable containing `addr` (a data symbol at most 64 KiB below it), with
    /// the offset into it.
    pub fn data(&self, addr: u64) -> Option<(&KernelSymbol, u64)> {
        self.lookup(addr)
            .filter(|(sym, off)| sym.is_data() && *off < MAX_DATA_OFFSET)
    }

    /// The static variable containing `addr` as `name` or `name+0xoff`, if one does.
    pub fn data_name(&self, addr: u64) -> Option<String> {
        self.data(addr).map(|(sym, off)| match off {
            0 => sym.name.clone(),
            off => format!("{}+{off:#x}", sym.name),
        })
    }

    /// The symbols whose ranges contain any of `addrs`: what a trace file must carry to name
    /// those addresses elsewhere.
    pub fn subset_for(&self, addrs: impl IntoIterator<Item = u64>) -> Vec<KernelSymbol> {
        let mut picked: Vec<KernelSymbol> = addrs
            .into_iter()
            .filter_map(|addr| self.lookup(addr).map(|(sym, _)| sym.clone()))
            .collect();
        picked.sort_by_key(|s| s.addr);
        picked.dedup_by_key(|s| s.addr);
        picked
    }

    /// Adds symbols (for example those read back from a trace file).
    pub fn extend(&mut self, more: impl IntoIterator<Item = KernelSymbol>) {
        let mut all = std::mem::take(&mut self.symbols);
        all.extend(more);
        *self = KernelSymbols::from_symbols(all);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
ffffffff81000000 T _stext
ffffffff81234560 t pcpu_alloc_noprof
ffffffff81234900 T free_percpu
ffffffff82a00000 d pcpu_lock
ffffffff82a00040 b vmap_area_lock
ffffffffc0001000 t lt_seed_trigger\t[locktrace_test]
0000000000000000 T hidden
";

    #[test]
    fn lookup_finds_the_enclosing_symbol_and_offset() {
        let syms = KernelSymbols::parse(SAMPLE);
        let (sym, off) = syms.function(0xffffffff81234570).unwrap();
        assert_eq!((sym.name.as_str(), off), ("pcpu_alloc_noprof", 0x10));
        let (sym, off) = syms.data(0xffffffff82a00044).unwrap();
        assert_eq!((sym.name.as_str(), off), ("vmap_area_lock", 4));
        assert!(
            syms.function(0xffffffff82a00000).is_none(),
            "data is not a function"
        );
        assert!(syms.lookup(0x1000).is_none(), "below the first symbol");
    }

    #[test]
    fn module_names_and_zero_addresses() {
        let syms = KernelSymbols::parse(SAMPLE);
        assert_eq!(syms.len(), 6, "the all-zero line is dropped");
        let (sym, _) = syms.lookup(0xffffffffc0001004).unwrap();
        assert_eq!(sym.module.as_deref(), Some("locktrace_test"));
        assert!(
            !syms.has_data_symbols(),
            "two data symbols are only markers"
        );
        let many: String = (0..MIN_DATA_SYMBOLS)
            .map(|i| format!("{:x} d var{i}\n", 0xffffffff82000000u64 + i as u64 * 8))
            .collect();
        assert!(KernelSymbols::parse(&many).has_data_symbols());
    }

    #[test]
    fn data_lookup_stops_far_from_the_symbol() {
        let syms = KernelSymbols::parse(SAMPLE);
        assert!(syms.data(0xffffffff82a00040 + MAX_DATA_OFFSET).is_none());
    }
}
