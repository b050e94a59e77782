//! ELF stub builder: small, valid dynamic ELF files for any machine, built
//! byte by byte so tests need no cross toolchain.
//!
//! A stub has one `PT_LOAD` covering the whole file (mapped at a virtual
//! address different from its offset, so address→offset mapping is
//! exercised), an optional `PT_INTERP`, and a `PT_DYNAMIC` with string
//! table, `DT_NEEDED`/`DT_SONAME`/`DT_RUNPATH`/`DT_RPATH`/`DT_FLAGS_1` and
//! GNU version definitions and requirements. Section headers (`.dynstr`,
//! `.dynamic`, `.gnu.version_d`, `.gnu.version_r`, `.shstrtab`) are written
//! unless [`Stub::strip_sections`] is set, so `readelf` can check the stub.

use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Machine {
    Aarch64,
    /// 32-bit ARM, hard-float EABI5.
    Arm,
    X86_64,
}

impl Machine {
    fn e_machine(self) -> u16 {
        match self {
            Machine::Aarch64 => 183,
            Machine::Arm => 40,
            Machine::X86_64 => 62,
        }
    }
    fn is_64(self) -> bool {
        self != Machine::Arm
    }
    fn e_flags(self) -> u32 {
        match self {
            Machine::Arm => 0x0500_0400, // EF_ARM_EABI_VER5 | EF_ARM_ABI_FLOAT_HARD
            _ => 0,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Stub {
    pub machine: Machine,
    /// `ET_DYN` (3) or `ET_EXEC` (2).
    pub e_type: u16,
    pub interp: Option<String>,
    pub needed: Vec<String>,
    pub soname: Option<String>,
    pub runpath: Option<String>,
    pub rpath: Option<String>,
    pub flags_1: u64,
    pub verdefs: Vec<String>,
    pub verneeds: Vec<(String, Vec<String>)>,
    /// Defined global functions of the dynamic symbol table (`DT_SYMTAB`,
    /// sized by a `DT_HASH`); none and no imports: no symbol table.
    pub exports: Vec<String>,
    /// Undefined global symbols.
    pub imports: Vec<String>,
    pub strip_sections: bool,
}

impl Stub {
    pub fn lib(machine: Machine, soname: &str) -> Stub {
        Stub {
            machine,
            e_type: 3,
            interp: None,
            needed: Vec::new(),
            soname: Some(soname.to_owned()),
            runpath: None,
            rpath: None,
            flags_1: 0,
            verdefs: Vec::new(),
            verneeds: Vec::new(),
            exports: Vec::new(),
            imports: Vec::new(),
            strip_sections: false,
        }
    }

    pub fn exe(machine: Machine, interp: &str) -> Stub {
        Stub {
            interp: Some(interp.to_owned()),
            soname: None,
            flags_1: 0x0800_0000,
            ..Stub::lib(machine, "")
        }
    }

    pub fn needs(mut self, libs: &[&str]) -> Stub {
        self.needed = libs.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    pub fn exports(mut self, names: &[&str]) -> Stub {
        self.exports = names.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    pub fn imports(mut self, names: &[&str]) -> Stub {
        self.imports = names.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    pub fn write(&self, path: &Path) {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("create stub dir");
        }
        std::fs::write(path, self.build()).expect("write stub");
    }

    pub fn build(&self) -> Vec<u8> {
        let b64 = self.machine.is_64();
        let (ehsize, phentsize, shentsize) = if b64 { (64, 56, 64) } else { (52, 32, 40) };
        let base: u64 = 0x40_0000;

        // String table.
        let mut dynstr = vec![0u8];
        let mut add_str = |s: &str| -> u32 {
            let off = dynstr.len() as u32;
            dynstr.extend_from_slice(s.as_bytes());
            dynstr.push(0);
            off
        };
        let needed: Vec<u32> = self.needed.iter().map(|s| add_str(s)).collect();
        let soname = self
            .soname
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(&mut add_str);
        let runpath = self.runpath.as_deref().map(&mut add_str);
        let rpath = self.rpath.as_deref().map(&mut add_str);
        let base_name = add_str(self.soname.as_deref().unwrap_or("stub"));
        let verdef_names: Vec<u32> = self.verdefs.iter().map(|s| add_str(s)).collect();
        let verneed_names: Vec<(u32, Vec<u32>)> = self
            .verneeds
            .iter()
            .map(|(f, vs)| (add_str(f), vs.iter().map(|v| add_str(v)).collect()))
            .collect();
        let export_names: Vec<u32> = self.exports.iter().map(|s| add_str(s)).collect();
        let import_names: Vec<u32> = self.imports.iter().map(|s| add_str(s)).collect();

        let e = Endian;
        // Dynamic symbols: the null entry, exports (absolute, global
        // functions), imports (undefined, global); a DT_HASH with one bucket
        // chaining them all.
        let mut dynsym = Vec::new();
        let mut hash = Vec::new();
        if !export_names.is_empty() || !import_names.is_empty() {
            let syms: Vec<(u32, u16)> = std::iter::once((0, 0))
                .chain(export_names.iter().map(|&n| (n, 0xfff1)))
                .chain(import_names.iter().map(|&n| (n, 0)))
                .collect();
            for (i, (name, shndx)) in syms.iter().enumerate() {
                let info = if i == 0 { 0 } else { 0x12 }; // STB_GLOBAL, STT_FUNC
                e.u32(&mut dynsym, *name);
                if b64 {
                    dynsym.extend_from_slice(&[info, 0]);
                    e.u16(&mut dynsym, *shndx);
                    e.word(&mut dynsym, true, 0);
                    e.word(&mut dynsym, true, 0);
                } else {
                    e.u32(&mut dynsym, 0);
                    e.u32(&mut dynsym, 0);
                    dynsym.extend_from_slice(&[info, 0]);
                    e.u16(&mut dynsym, *shndx);
                }
            }
            let n = syms.len() as u32;
            e.u32(&mut hash, 1);
            e.u32(&mut hash, n);
            e.u32(&mut hash, n - 1);
            for k in 0..n {
                e.u32(&mut hash, k.saturating_sub(1));
            }
        }
        // Version definitions: BASE entry first, as linkers write them.
        let mut verdef = Vec::new();
        if !self.verdefs.is_empty() {
            let names: Vec<(u16, u32)> = std::iter::once((1u16, base_name))
                .chain(verdef_names.iter().map(|&n| (0u16, n)))
                .collect();
            for (i, (flags, name)) in names.iter().enumerate() {
                let last = i + 1 == names.len();
                e.u16(&mut verdef, 1);
                e.u16(&mut verdef, *flags);
                e.u16(&mut verdef, i as u16 + 1);
                e.u16(&mut verdef, 1);
                e.u32(&mut verdef, 0); // hash: not checked by readers here
                e.u32(&mut verdef, 20);
                e.u32(&mut verdef, if last { 0 } else { 28 });
                e.u32(&mut verdef, *name);
                e.u32(&mut verdef, 0);
            }
        }
        let mut verneed = Vec::new();
        let mut ndx = self.verdefs.len() as u16 + 2;
        for (i, (file, names)) in verneed_names.iter().enumerate() {
            let last = i + 1 == verneed_names.len();
            e.u16(&mut verneed, 1);
            e.u16(&mut verneed, names.len() as u16);
            e.u32(&mut verneed, *file);
            e.u32(&mut verneed, 16);
            e.u32(
                &mut verneed,
                if last {
                    0
                } else {
                    16 + 16 * names.len() as u32
                },
            );
            for (j, n) in names.iter().enumerate() {
                e.u32(&mut verneed, 0);
                e.u16(&mut verneed, 0);
                e.u16(&mut verneed, ndx);
                ndx += 1;
                e.u32(&mut verneed, *n);
                e.u32(&mut verneed, if j + 1 == names.len() { 0 } else { 16 });
            }
        }

        // Layout: header, program headers, interp, dynstr, verdef, verneed, dynamic, shstrtab, shdrs.
        let phnum = 2 + usize::from(self.interp.is_some());
        let mut off = ehsize + phentsize * phnum;
        let interp_off = off;
        let interp_bytes: Vec<u8> = self
            .interp
            .as_ref()
            .map(|s| [s.as_bytes(), &[0]].concat())
            .unwrap_or_default();
        off += interp_bytes.len();
        let dynstr_off = align(off, 8);
        off = dynstr_off + dynstr.len();
        let verdef_off = align(off, 8);
        off = verdef_off + verdef.len();
        let verneed_off = align(off, 8);
        off = verneed_off + verneed.len();
        let dynsym_off = align(off, 8);
        off = dynsym_off + dynsym.len();
        let hash_off = align(off, 8);
        off = hash_off + hash.len();
        let dynamic_off = align(off, 8);

        let va = |o: usize| base + o as u64;
        let mut dyns: Vec<(u64, u64)> = Vec::new();
        dyns.extend(needed.iter().map(|&n| (1, u64::from(n))));
        if let Some(s) = soname {
            dyns.push((14, u64::from(s)));
        }
        if let Some(r) = rpath {
            dyns.push((15, u64::from(r)));
        }
        if let Some(r) = runpath {
            dyns.push((29, u64::from(r)));
        }
        dyns.push((5, va(dynstr_off)));
        dyns.push((10, dynstr.len() as u64));
        if !verdef.is_empty() {
            dyns.push((0x6fff_fffc, va(verdef_off)));
            dyns.push((0x6fff_fffd, self.verdefs.len() as u64 + 1));
        }
        if !verneed.is_empty() {
            dyns.push((0x6fff_fffe, va(verneed_off)));
            dyns.push((0x6fff_ffff, self.verneeds.len() as u64));
        }
        if !dynsym.is_empty() {
            dyns.push((6, va(dynsym_off)));
            dyns.push((11, if b64 { 24 } else { 16 }));
            dyns.push((4, va(hash_off)));
        }
        if self.flags_1 != 0 {
            dyns.push((0x6fff_fffb, self.flags_1));
        }
        dyns.push((0, 0));
        let mut dynamic = Vec::new();
        for (tag, val) in &dyns {
            e.word(&mut dynamic, b64, *tag);
            e.word(&mut dynamic, b64, *val);
        }
        off = dynamic_off + dynamic.len();

        let shstrtab = b"\0.dynstr\0.dynamic\0.gnu.version_d\0.gnu.version_r\0.shstrtab\0".to_vec();
        let shstrtab_off = off;
        off += shstrtab.len();
        let shoff = align(off, 8);
        let file_end_no_sh = off;

        let mut out = vec![0u8; dynamic_off + dynamic.len()];
        out[interp_off..interp_off + interp_bytes.len()].copy_from_slice(&interp_bytes);
        out[dynstr_off..dynstr_off + dynstr.len()].copy_from_slice(&dynstr);
        out[verdef_off..verdef_off + verdef.len()].copy_from_slice(&verdef);
        out[verneed_off..verneed_off + verneed.len()].copy_from_slice(&verneed);
        out[dynsym_off..dynsym_off + dynsym.len()].copy_from_slice(&dynsym);
        out[hash_off..hash_off + hash.len()].copy_from_slice(&hash);
        out[dynamic_off..].copy_from_slice(&dynamic);

        let mut sections: Vec<[u64; 8]> = Vec::new(); // name type addr offset size link info entsize
        if !self.strip_sections {
            out.extend_from_slice(&shstrtab);
            out.resize(shoff, 0);
            let dyn_ent = if b64 { 16 } else { 8 };
            sections.push([0; 8]);
            sections.push([
                1,
                3,
                va(dynstr_off),
                dynstr_off as u64,
                dynstr.len() as u64,
                0,
                0,
                0,
            ]);
            sections.push([
                9,
                6,
                va(dynamic_off),
                dynamic_off as u64,
                dynamic.len() as u64,
                1,
                0,
                dyn_ent,
            ]);
            if !verdef.is_empty() {
                let n = self.verdefs.len() as u64 + 1;
                sections.push([
                    18,
                    0x6fff_fffd,
                    va(verdef_off),
                    verdef_off as u64,
                    verdef.len() as u64,
                    1,
                    n,
                    0,
                ]);
            }
            if !verneed.is_empty() {
                let n = self.verneeds.len() as u64;
                sections.push([
                    33,
                    0x6fff_fffe,
                    va(verneed_off),
                    verneed_off as u64,
                    verneed.len() as u64,
                    1,
                    n,
                    0,
                ]);
            }
            sections.push([
                48,
                3,
                0,
                shstrtab_off as u64,
                shstrtab.len() as u64,
                0,
                0,
                0,
            ]);
            for s in &sections {
                let flags = if s[0] == 48 || s[1] == 0 { 0 } else { 2 }; // SHF_ALLOC but for null and .shstrtab
                e.u32(&mut out, s[0] as u32);
                e.u32(&mut out, s[1] as u32);
                e.word(&mut out, b64, flags);
                e.word(&mut out, b64, s[2]);
                e.word(&mut out, b64, s[3]);
                e.word(&mut out, b64, s[4]);
                e.u32(&mut out, s[5] as u32);
                e.u32(&mut out, s[6] as u32);
                e.word(&mut out, b64, if s[1] == 0 { 0 } else { 8 });
                e.word(&mut out, b64, s[7]);
            }
        }
        let file_len = if self.strip_sections {
            file_end_no_sh.min(out.len())
        } else {
            out.len()
        };

        // ELF header.
        let mut h = Vec::new();
        h.extend_from_slice(&[0x7f, b'E', b'L', b'F', if b64 { 2 } else { 1 }, 1, 1, 0]);
        h.extend_from_slice(&[0; 8]);
        e.u16(&mut h, self.e_type);
        e.u16(&mut h, self.machine.e_machine());
        e.u32(&mut h, 1);
        e.word(&mut h, b64, 0); // entry
        e.word(&mut h, b64, ehsize as u64);
        e.word(
            &mut h,
            b64,
            if sections.is_empty() { 0 } else { shoff as u64 },
        );
        e.u32(&mut h, self.machine.e_flags());
        e.u16(&mut h, ehsize as u16);
        e.u16(&mut h, phentsize as u16);
        e.u16(&mut h, phnum as u16);
        e.u16(&mut h, shentsize as u16);
        e.u16(&mut h, sections.len() as u16);
        e.u16(&mut h, sections.len().saturating_sub(1) as u16);
        // Program headers: (type, flags, offset, size).
        let mut phdrs: Vec<(u32, u32, usize, usize)> = Vec::new();
        if self.interp.is_some() {
            phdrs.push((3, 4, interp_off, interp_bytes.len()));
        }
        phdrs.push((1, 5, 0, dynamic_off + dynamic.len()));
        phdrs.push((2, 6, dynamic_off, dynamic.len()));
        for (ty, flags, o, size) in phdrs {
            let (o, size) = (o as u64, size as u64);
            e.u32(&mut h, ty);
            if b64 {
                e.u32(&mut h, flags);
                for v in [o, va(o as usize), va(o as usize), size, size, 0x1000] {
                    e.word(&mut h, true, v);
                }
            } else {
                for v in [o, va(o as usize), va(o as usize), size, size] {
                    e.u32(&mut h, v as u32);
                }
                e.u32(&mut h, flags);
                e.u32(&mut h, 0x1000);
            }
        }
        out[..h.len()].copy_from_slice(&h);
        out.truncate(file_len);
        out
    }
}

fn align(v: usize, a: usize) -> usize {
    v.div_ceil(a) * a
}

/// Little-endian writer (all stub machines are little-endian).
#[derive(Clone, Copy)]
struct Endian;

impl Endian {
    fn u16(self, out: &mut Vec<u8>, v: u16) {
        out.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(self, out: &mut Vec<u8>, v: u32) {
        out.extend_from_slice(&v.to_le_bytes());
    }
    fn word(self, out: &mut Vec<u8>, b64: bool, v: u64) {
        if b64 {
            out.extend_from_slice(&v.to_le_bytes())
        } else {
            self.u32(out, v as u32)
        }
    }
}
