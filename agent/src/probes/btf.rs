//! A minimal reader of the kernel's BTF (`/sys/kernel/btf/vmlinux`): struct member offsets
//! (through anonymous members and arrays), sizes, enum values and function prototypes.
//!
//! Not `btfparse`: it needs ≈62 MB and ≈115 ms to parse vmlinux, and the agent must idle
//! under 32 MiB; this reader keeps the raw bytes plus one `u32` per type (≈8 ms, ≈7 MB, freed
//! after start-up), and it walks anonymous members, which `kernel_siginfo.si_code` needs.

use std::collections::HashMap;

const MAGIC: u16 = 0xeb9f;

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error(
        "cannot read {path}: {source} (coroner needs a kernel built with CONFIG_DEBUG_INFO_BTF=y)"
    )]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("malformed BTF: {0}")]
    Malformed(&'static str),
    #[error("the kernel's BTF has no {kind} named `{name}`")]
    NoType { kind: &'static str, name: String },
    #[error("`{ty}` has no member `{member}` in this kernel")]
    NoMember { ty: String, member: String },
    #[error("`{0}` is not a struct, union or array where the path needs one")]
    NotComposite(String),
}

/// The kinds this reader distinguishes (`BTF_KIND_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Int = 1,
    Ptr = 2,
    Array = 3,
    Struct = 4,
    Union = 5,
    Enum = 6,
    Fwd = 7,
    Typedef = 8,
    Volatile = 9,
    Const = 10,
    Restrict = 11,
    Func = 12,
    FuncProto = 13,
    Var = 14,
    Datasec = 15,
    Float = 16,
    DeclTag = 17,
    TypeTag = 18,
    Enum64 = 19,
}

impl Kind {
    fn from_raw(raw: u32) -> Option<Self> {
        use Kind::{
            Array, Const, Datasec, DeclTag, Enum, Enum64, Float, Func, FuncProto, Fwd, Int, Ptr,
            Restrict, Struct, TypeTag, Typedef, Union, Var, Volatile,
        };
        Some(match raw {
            1 => Int,
            2 => Ptr,
            3 => Array,
            4 => Struct,
            5 => Union,
            6 => Enum,
            7 => Fwd,
            8 => Typedef,
            9 => Volatile,
            10 => Const,
            11 => Restrict,
            12 => Func,
            13 => FuncProto,
            14 => Var,
            15 => Datasec,
            16 => Float,
            17 => DeclTag,
            18 => TypeTag,
            19 => Enum64,
            _ => return None,
        })
    }
}

/// A parsed BTF blob: the type section indexed by type id.
pub struct Btf {
    types: Vec<u8>,
    strings: Vec<u8>,
    /// `offsets[id - 1]` = where type `id` starts in `types`.
    offsets: Vec<u32>,
    /// `(kind, hash of name)` → first type id; a hit is confirmed by comparing the name.
    by_name: HashMap<(u8, u64), u32>,
}

fn name_hash(name: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    h.finish()
}

#[derive(Clone, Copy, Debug)]
struct RawType {
    name_off: u32,
    kind: Kind,
    vlen: usize,
    kind_flag: bool,
    size_or_type: u32,
    /// Start of the kind-specific data after the 12-byte common header.
    extra: usize,
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

impl Btf {
    pub fn from_sys() -> Result<Self, BtfError> {
        Self::from_path("/sys/kernel/btf/vmlinux")
    }

    pub fn from_path(path: &str) -> Result<Self, BtfError> {
        let bytes = std::fs::read(path).map_err(|source| BtfError::Read {
            path: path.into(),
            source,
        })?;
        Self::parse(&bytes)
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, BtfError> {
        let bad = BtfError::Malformed;
        if bytes.len() < 24 || u16::from_le_bytes([bytes[0], bytes[1]]) != MAGIC {
            return Err(bad("no BTF magic (big-endian BTF is not supported)"));
        }
        let field = |at| {
            u32_at(bytes, at)
                .ok_or(bad("truncated header"))
                .map(|v| v as usize)
        };
        let hdr_len = field(4)?;
        let (type_off, type_len, str_off, str_len) =
            (field(8)?, field(12)?, field(16)?, field(20)?);
        let section = |off: usize, len: usize| {
            bytes
                .get(hdr_len + off..hdr_len + off + len)
                .ok_or(bad("section out of bounds"))
        };
        let types = section(type_off, type_len)?.to_vec();
        let strings = section(str_off, str_len)?.to_vec();
        let mut btf = Btf {
            types,
            strings,
            offsets: Vec::new(),
            by_name: HashMap::new(),
        };
        let mut at = 0usize;
        while at < btf.types.len() {
            let raw = btf.raw_at(at).ok_or(bad("truncated type"))?;
            let id = btf.offsets.len() as u32 + 1;
            btf.offsets.push(at as u32);
            if raw.name_off != 0 && matches!(raw.kind, Kind::Struct | Kind::Union | Kind::Typedef) {
                let key = (raw.kind as u8, name_hash(btf.name(raw.name_off).as_bytes()));
                btf.by_name.entry(key).or_insert(id);
            }
            at = raw.extra + Self::extra_len(raw);
        }
        Ok(btf)
    }

    fn extra_len(raw: RawType) -> usize {
        match raw.kind {
            Kind::Int | Kind::Var | Kind::DeclTag => 4,
            Kind::Array => 12,
            Kind::Struct | Kind::Union | Kind::Datasec | Kind::Enum64 => 12 * raw.vlen,
            Kind::Enum | Kind::FuncProto => 8 * raw.vlen,
            _ => 0,
        }
    }

    fn raw_at(&self, at: usize) -> Option<RawType> {
        let info = u32_at(&self.types, at + 4)?;
        Some(RawType {
            name_off: u32_at(&self.types, at)?,
            kind: Kind::from_raw((info >> 24) & 0x1f)?,
            vlen: (info & 0xffff) as usize,
            kind_flag: info >> 31 == 1,
            size_or_type: u32_at(&self.types, at + 8)?,
            extra: at + 12,
        })
    }

    fn raw(&self, id: u32) -> Option<RawType> {
        let at = *self.offsets.get((id as usize).checked_sub(1)?)? as usize;
        self.raw_at(at)
    }

    fn name(&self, off: u32) -> &str {
        let tail = self.strings.get(off as usize..).unwrap_or_default();
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        std::str::from_utf8(&tail[..end]).unwrap_or("")
    }

    /// The id of the type of `kind` named `name` (kinds are kept apart: a function and a
    /// struct may share a name).
    pub fn find(&self, kind: Kind, name: &str) -> Result<u32, BtfError> {
        if let Some(&id) = self.by_name.get(&(kind as u8, name_hash(name.as_bytes())))
            && self.raw(id).is_some_and(|t| self.name(t.name_off) == name)
        {
            return Ok(id);
        }
        // A hash collision, or a kind that is not indexed: scan.
        (1..=self.offsets.len() as u32)
            .find(|&id| {
                self.raw(id)
                    .is_some_and(|t| t.kind == kind && self.name(t.name_off) == name)
            })
            .ok_or_else(|| BtfError::NoType {
                kind: kind_name(kind),
                name: name.into(),
            })
    }

    /// Follows typedefs and qualifiers to the type they name.
    #[must_use]
    pub fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..32 {
            match self.raw(id) {
                Some(t)
                    if matches!(
                        t.kind,
                        Kind::Typedef
                            | Kind::Volatile
                            | Kind::Const
                            | Kind::Restrict
                            | Kind::TypeTag
                    ) =>
                {
                    id = t.size_or_type;
                }
                _ => break,
            }
        }
        id
    }

    #[must_use]
    pub fn kind(&self, id: u32) -> Option<Kind> {
        self.raw(self.resolve(id)).map(|t| t.kind)
    }

    /// Size in bytes of a type.
    #[must_use]
    pub fn size_of(&self, id: u32) -> Option<u32> {
        let t = self.raw(self.resolve(id))?;
        match t.kind {
            Kind::Int | Kind::Struct | Kind::Union | Kind::Enum | Kind::Enum64 | Kind::Float => {
                Some(t.size_or_type)
            }
            Kind::Ptr => Some(8),
            Kind::Array => {
                let elem = u32_at(&self.types, t.extra)?;
                let count = u32_at(&self.types, t.extra + 8)?;
                self.size_of(elem)?.checked_mul(count)
            }
            _ => None,
        }
    }

    /// The element type and count of an array type.
    #[must_use]
    pub fn array(&self, id: u32) -> Option<(u32, u32)> {
        let t = self.raw(self.resolve(id))?;
        (t.kind == Kind::Array).then(|| {
            Some((
                u32_at(&self.types, t.extra)?,
                u32_at(&self.types, t.extra + 8)?,
            ))
        })?
    }

    /// A member of a struct or union, looked for through anonymous members too:
    /// `(byte offset, member type id)`.
    #[must_use]
    pub fn member(&self, composite: u32, name: &str) -> Option<(u32, u32)> {
        let t = self.raw(self.resolve(composite))?;
        if !matches!(t.kind, Kind::Struct | Kind::Union) {
            return None;
        }
        for i in 0..t.vlen {
            let at = t.extra + 12 * i;
            let (name_off, ty, raw_off) = (
                u32_at(&self.types, at)?,
                u32_at(&self.types, at + 4)?,
                u32_at(&self.types, at + 8)?,
            );
            let bits = if t.kind_flag {
                raw_off & 0x00ff_ffff
            } else {
                raw_off
            };
            if name_off == 0 {
                if let Some((inner, inner_ty)) = self.member(ty, name) {
                    return Some((bits / 8 + inner, inner_ty));
                }
            } else if self.name(name_off) == name {
                return Some((bits / 8, ty));
            }
        }
        None
    }

    /// Byte offset of a dotted member path inside a struct, e.g. `"memory.usage.counter"` in
    /// `mem_cgroup` or `"subsys[4]"` in `css_set`. Pointers are not followed.
    pub fn offset_of(&self, struct_name: &str, path: &str) -> Result<u32, BtfError> {
        let root = self.find(Kind::Struct, struct_name)?;
        self.offset_in(root, struct_name, path).map(|(off, _)| off)
    }

    /// Like [`Btf::offset_of`], from a type id; also returns the member's type.
    pub fn offset_in(
        &self,
        mut ty: u32,
        ty_name: &str,
        path: &str,
    ) -> Result<(u32, u32), BtfError> {
        let mut offset = 0u32;
        for part in path.split('.') {
            let (name, index) = match part.split_once('[') {
                Some((name, rest)) => {
                    let index = rest
                        .trim_end_matches(']')
                        .parse::<u32>()
                        .map_err(|_| BtfError::Malformed("bad array index in a member path"))?;
                    (name, Some(index))
                }
                None => (part, None),
            };
            let (member_off, member_ty) =
                self.member(ty, name).ok_or_else(|| BtfError::NoMember {
                    ty: ty_name.into(),
                    member: path.into(),
                })?;
            offset += member_off;
            ty = member_ty;
            if let Some(index) = index {
                let (elem, count) = self
                    .array(ty)
                    .ok_or_else(|| BtfError::NotComposite(format!("{ty_name}.{name}")))?;
                if index >= count {
                    return Err(BtfError::NoMember {
                        ty: ty_name.into(),
                        member: path.into(),
                    });
                }
                offset += index
                    * self
                        .size_of(elem)
                        .ok_or(BtfError::Malformed("array element without size"))?;
                ty = elem;
            }
        }
        Ok((offset, ty))
    }

    /// The value of an enumerator, searched in every enum (kernel enumerators are unique).
    #[must_use]
    pub fn enum_value(&self, enumerator: &str) -> Option<i64> {
        for id in 1..=self.offsets.len() as u32 {
            let t = self.raw(id)?;
            let stride = match t.kind {
                Kind::Enum => 8,
                Kind::Enum64 => 12,
                _ => continue,
            };
            for i in 0..t.vlen {
                let at = t.extra + stride * i;
                if self.name(u32_at(&self.types, at)?) == enumerator {
                    let lo = u32_at(&self.types, at + 4)?;
                    return Some(if stride == 12 {
                        i64::from(lo) | (i64::from(u32_at(&self.types, at + 8)?) << 32)
                    } else {
                        i64::from(lo as i32)
                    });
                }
            }
        }
        None
    }

    /// The parameter types of the tracepoint `name` as `tp_btf` sees them (from the
    /// `btf_trace_<name>` typedef, without its leading `void *` context).
    pub fn tracepoint_params(&self, name: &str) -> Result<Vec<u32>, BtfError> {
        let typedef = self.find(Kind::Typedef, &format!("btf_trace_{name}"))?;
        let ptr = self.resolve(typedef);
        let proto = self
            .raw(ptr)
            .filter(|t| t.kind == Kind::Ptr)
            .map(|t| self.resolve(t.size_or_type));
        let proto = proto
            .and_then(|p| self.raw(p))
            .filter(|t| t.kind == Kind::FuncProto)
            .ok_or(BtfError::Malformed(
                "btf_trace typedef is not a function pointer",
            ))?;
        let params = (0..proto.vlen)
            .filter_map(|i| u32_at(&self.types, proto.extra + 8 * i + 4))
            .skip(1)
            .collect();
        Ok(params)
    }

    /// `Some(name)` when `id` is a pointer to a struct called `name`.
    #[must_use]
    pub fn pointee_struct(&self, id: u32) -> Option<&str> {
        let t = self.raw(self.resolve(id))?;
        if t.kind != Kind::Ptr {
            return None;
        }
        let target = self.raw(self.resolve(t.size_or_type))?;
        (target.kind == Kind::Struct).then(|| self.name(target.name_off))
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Struct => "struct",
        Kind::Union => "union",
        Kind::Typedef => "typedef",
        Kind::Enum | Kind::Enum64 => "enum",
        Kind::Func => "function",
        _ => "type",
    }
}
