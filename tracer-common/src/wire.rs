//! [`wire_enum!`](crate::wire_enum): an enumeration that travels as an integer, declared once.

/// Declares an enumeration that travels as an integer (in the ring buffer, a map, a trace
/// file): every variant with its explicit value and, optionally, its stable name. The values
/// are the ABI: a retired one is never reused.
///
/// It generates the enum, `#[repr]` of the given integer type, and:
/// - `ALL`: every variant, in declaration order;
/// - `from_u32`: the variant of a raw value, as a `match` (no memory load, which the BPF
///   programs' loops prefer). It returns `None` for a value this build does not know, or,
///   when the declaration names an `else` variant, that variant;
/// - `name`, when every variant has a name: the variant's stable name.
///
/// ```
/// tracer_common::wire_enum! {
///     /// A light.
///     #[derive(Clone, Copy, Debug, PartialEq, Eq)]
///     pub enum Light: u32 else Off {
///         /// Off, or anything this build does not know.
///         Off = 0 => "off",
///         /// On.
///         On = 1 => "on",
///     }
/// }
/// assert_eq!(Light::from_u32(1).name(), "on");
/// assert_eq!(Light::from_u32(7), Light::Off);
/// assert_eq!(Light::ALL, [Light::Off, Light::On]);
/// ```
#[macro_export]
macro_rules! wire_enum {
    (@decode $name:ident [] $( $variant:ident = $value:literal ),+) => {
        impl $name {
            /// Decodes a raw value; `None` for values this build does not know.
            pub const fn from_u32(raw: u32) -> ::core::option::Option<$name> {
                match raw {
                    $( $value => ::core::option::Option::Some($name::$variant), )+
                    _ => ::core::option::Option::None,
                }
            }
        }
    };
    (@decode $name:ident [$fallback:ident] $( $variant:ident = $value:literal ),+) => {
        impl $name {
            #[doc = concat!(
                "Decodes a raw value; anything unknown reads as [`", stringify!($name), "::",
                stringify!($fallback), "`]."
            )]
            pub const fn from_u32(raw: u32) -> $name {
                match raw {
                    $( $value => $name::$variant, )+
                    _ => $name::$fallback,
                }
            }
        }
    };
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident : $repr:ident $(else $fallback:ident)? {
            $( $(#[$vmeta:meta])* $variant:ident = $value:literal => $vname:literal ),+ $(,)?
        }
    ) => {
        $crate::wire_enum! {
            $(#[$meta])*
            $vis enum $name : $repr $(else $fallback)? {
                $( $(#[$vmeta])* $variant = $value ),+
            }
        }

        impl $name {
            /// A short stable name, used in reports, status lines, trace files and JSON.
            pub const fn name(self) -> &'static str {
                match self {
                    $( $name::$variant => $vname, )+
                }
            }
        }
    };
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident : $repr:ident $(else $fallback:ident)? {
            $( $(#[$vmeta:meta])* $variant:ident = $value:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[repr($repr)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant = $value, )+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: [$name; [$( $name::$variant ),+].len()] = [$( $name::$variant ),+];
        }

        $crate::wire_enum!(@decode $name [$($fallback)?] $( $variant = $value ),+);
    };
}
