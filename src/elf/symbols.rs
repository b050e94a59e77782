//! The dynamic symbol table (`DT_SYMTAB`), read through the program
//! headers like everything else in this module: no section headers needed.
//!
//! The table has no size of its own in the dynamic segment. The number of
//! entries comes from `DT_HASH` (its `nchain` is the symbol count) or, for
//! files with only `DT_GNU_HASH`, from the highest symbol index its hash
//! chains reach. A `DT_GNU_HASH` without any hashed symbol (an executable
//! that exports nothing) says nothing about the undefined ones before
//! them: then, and for files with neither table, the table is taken to end
//! at the next table the dynamic segment points to (linkers put `.dynstr`
//! right after `.dynsym`), and reading stops at the first entry whose name
//! lies outside the string table.

use std::path::Path;

use object::elf;
use object::read::elf::{Dyn as _, FileHeader, Sym as _};
use object::{Endianness, pod};

use super::ElfError;
use super::parse::{MAX_TABLE, Source, Strings, Window, by_class, segments};

/// The names a file's dynamic symbol table defines and refers to, each list
/// sorted and without duplicates (a name defined in several versions, like
/// glibc's `memcpy@GLIBC_2.2.5` and `memcpy@@GLIBC_2.14`, appears once).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DynSymbols {
    /// Defined symbols other objects can bind to: global, weak or unique
    /// binding, default or protected visibility.
    pub exports: Vec<String>,
    /// Undefined symbols with global binding: the file cannot run without
    /// them.
    pub imports: Vec<String>,
    /// Undefined weak symbols: used when some loaded object defines them.
    pub weak_imports: Vec<String>,
}

/// Symbol tables larger than this are refused as corrupt.
const MAX_SYMBOLS: u64 = 1 << 21;

/// Reads the dynamic symbols of one file. `Ok(None)` when it is not an ELF
/// file; an ELF file without a dynamic symbol table has empty lists.
pub fn read_symbols(path: &Path) -> Result<Option<DynSymbols>, ElfError> {
    by_class(
        path,
        symbols::<elf::FileHeader32<Endianness>>,
        symbols::<elf::FileHeader64<Endianness>>,
    )
}

fn symbols<Elf: FileHeader<Endian = Endianness>>(
    src: &Source<'_>,
    head: &[u8],
) -> Result<DynSymbols, ElfError> {
    let header = Elf::parse(head).map_err(|e| src.malformed(format!("bad ELF header: {e}")))?;
    let e = header.endian().map_err(|e| src.malformed(e.to_string()))?;
    let phoff: u64 = header.e_phoff(e).into();
    let phnum = u64::from(header.e_phnum(e));
    if phnum == 0 || phoff == 0 {
        return Ok(DynSymbols::default());
    }
    let phentsize = u64::from(header.e_phentsize(e));
    if phentsize != std::mem::size_of::<Elf::ProgramHeader>() as u64 {
        return Err(src.malformed(format!("program header entry size {phentsize}")));
    }
    let seg = segments::<Elf>(src, e, phoff, phnum)?;
    let Some((off, size)) = seg.dynamic else {
        return Ok(DynSymbols::default());
    };
    let raw = src.bytes(off, size, "PT_DYNAMIC")?;
    let count = raw.len() / std::mem::size_of::<Elf::Dyn>();
    let (dyns, _) = pod::slice_from_bytes::<Elf::Dyn>(&raw, count)
        .map_err(|_| src.malformed("dynamic segment"))?;
    let (mut symtab, mut syment, mut strtab, mut strsz) = (None, None, None, None);
    let (mut hash, mut gnu_hash) = (None, None);
    let mut addresses = Vec::new();
    for d in dyns {
        let val = d.val(e);
        if ADDRESS_TAGS.contains(&d.tag(e)) {
            addresses.push(val);
        }
        match d.tag(e) {
            elf::DT_NULL => break,
            elf::DT_SYMTAB => symtab = Some(val),
            elf::DT_SYMENT => syment = Some(val),
            elf::DT_STRTAB => strtab = Some(val),
            elf::DT_STRSZ => strsz = Some(val),
            elf::DT_HASH => hash = Some(val),
            elf::DT_GNU_HASH => gnu_hash = Some(val),
            _ => {}
        }
    }
    let (Some(symtab), Some(strtab), Some(strsz)) = (symtab, strtab, strsz) else {
        return Ok(DynSymbols::default());
    };
    let entsize = std::mem::size_of::<Elf::Sym>() as u64;
    if syment.is_some_and(|s| s != entsize) {
        return Err(src.malformed(format!("DT_SYMENT {syment:?}, expected {entsize}")));
    }
    let outside = |what: &str, va: u64| {
        src.malformed(format!("{what} {va:#x} is outside every PT_LOAD segment"))
    };
    let sym_off = seg
        .loads
        .offset(symtab)
        .ok_or_else(|| outside("DT_SYMTAB", symtab))?;
    let counted = if let Some(va) = hash {
        let at = seg.loads.offset(va).ok_or_else(|| outside("DT_HASH", va))?;
        let mut w = Window::new(src);
        let nchain: object::U32<Endianness> = w.get(at + 4, "DT_HASH nchain")?;
        Some(u64::from(nchain.get(e)))
    } else if let Some(va) = gnu_hash {
        let at = seg
            .loads
            .offset(va)
            .ok_or_else(|| outside("DT_GNU_HASH", va))?;
        gnu_hash_count(src, e, at, header.is_type_64())?
    } else {
        None
    };
    let estimated = counted.is_none();
    let nsyms = match counted {
        Some(n) => n,
        None => {
            let end = addresses.iter().copied().filter(|&a| a > symtab).min();
            let end = end.ok_or_else(|| src.malformed("cannot tell where DT_SYMTAB ends"))?;
            (end - symtab) / entsize
        }
    };
    if nsyms > MAX_SYMBOLS {
        return Err(src.malformed(format!("dynamic symbol table claims {nsyms} entries")));
    }
    let str_off = seg
        .loads
        .offset(strtab)
        .ok_or_else(|| outside("DT_STRTAB", strtab))?;
    let strings = Strings {
        data: src.bytes(str_off, strsz, "DT_STRTAB")?,
        src,
    };
    let table = src.bytes(sym_off, nsyms * entsize, "DT_SYMTAB")?;
    let (syms, _) = pod::slice_from_bytes::<Elf::Sym>(&table, nsyms as usize)
        .map_err(|_| src.malformed("dynamic symbol table"))?;
    let mut out = DynSymbols::default();
    for sym in syms.iter().skip(1) {
        if sym.st_name(e) == 0 {
            continue;
        }
        if estimated && u64::from(sym.st_name(e)) >= strsz {
            break;
        }
        let bind = sym.st_bind();
        let global = bind == elf::STB_GLOBAL || bind == elf::STB_GNU_UNIQUE;
        let list = if sym.st_shndx(e) == elf::SHN_UNDEF {
            match bind {
                elf::STB_GLOBAL => &mut out.imports,
                elf::STB_WEAK => &mut out.weak_imports,
                _ => continue,
            }
        } else {
            let visible = matches!(sym.st_visibility(), elf::STV_DEFAULT | elf::STV_PROTECTED);
            let kind = sym.st_type();
            if !(global || bind == elf::STB_WEAK)
                || !visible
                || kind == elf::STT_SECTION
                || kind == elf::STT_FILE
            {
                continue;
            }
            &mut out.exports
        };
        list.push(strings.get(u64::from(sym.st_name(e)))?);
    }
    for list in [&mut out.exports, &mut out.imports, &mut out.weak_imports] {
        list.sort_unstable();
        list.dedup();
    }
    Ok(out)
}

/// Dynamic tags whose value is an address in the file: one of them is the
/// first table after `DT_SYMTAB`.
const ADDRESS_TAGS: &[elf::DynamicTag] = &[
    elf::DT_PLTGOT,
    elf::DT_HASH,
    elf::DT_STRTAB,
    elf::DT_RELA,
    elf::DT_INIT,
    elf::DT_FINI,
    elf::DT_REL,
    elf::DT_JMPREL,
    elf::DT_INIT_ARRAY,
    elf::DT_FINI_ARRAY,
    elf::DT_PREINIT_ARRAY,
    elf::DT_GNU_HASH,
    elf::DT_VERSYM,
    elf::DT_VERDEF,
    elf::DT_VERNEED,
    elf::DT_RELR,
];

/// The number of dynamic symbols a `DT_GNU_HASH` table covers: the symbols
/// below `symoffset` are not hashed, the others are reached through the
/// buckets, and the chain of the highest bucket ends at the last symbol
/// (its entry has the low bit set). `None` when no symbol is hashed: then
/// `symoffset` need not cover the undefined symbols.
fn gnu_hash_count(
    src: &Source<'_>,
    e: Endianness,
    at: u64,
    is_64: bool,
) -> Result<Option<u64>, ElfError> {
    let mut w = Window::new(src);
    let word = |w: &mut Window<'_>, at: u64, what: &str| -> Result<u64, ElfError> {
        let v: object::U32<Endianness> = w.get(at, what)?;
        Ok(u64::from(v.get(e)))
    };
    let nbuckets = word(&mut w, at, "DT_GNU_HASH header")?;
    let symoffset = word(&mut w, at + 4, "DT_GNU_HASH header")?;
    let bloom_size = word(&mut w, at + 8, "DT_GNU_HASH header")?;
    let bloom_bytes = bloom_size * if is_64 { 8 } else { 4 };
    let buckets_at = at + 16 + bloom_bytes;
    if nbuckets * 4 > MAX_TABLE {
        return Err(src.malformed(format!("DT_GNU_HASH claims {nbuckets} buckets")));
    }
    let raw = src.bytes(buckets_at, nbuckets * 4, "DT_GNU_HASH buckets")?;
    let (buckets, _) = pod::slice_from_bytes::<object::U32<Endianness>>(&raw, nbuckets as usize)
        .map_err(|_| src.malformed("DT_GNU_HASH buckets"))?;
    let last = buckets.iter().map(|b| u64::from(b.get(e))).max();
    let Some(last) = last.filter(|&l| l != 0 && l >= symoffset) else {
        return Ok(None);
    };
    let chains_at = buckets_at + nbuckets * 4;
    let mut index = last;
    loop {
        if index > MAX_SYMBOLS {
            return Err(src.malformed("DT_GNU_HASH chain does not end"));
        }
        let at = chains_at + (index - symoffset) * 4;
        let hash = word(&mut w, at, "DT_GNU_HASH chain")?;
        if hash & 1 == 1 {
            return Ok(Some(index + 1));
        }
        index += 1;
    }
}
