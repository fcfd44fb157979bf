//! The spawn storm's program: a static x86-64 ELF of 132 bytes that only calls
//! `exit_group(code)`, written byte by byte. No loader, no libc start-up, no page faults past
//! the first: a storm of it measures process creation and death, which is what the probes
//! see, not a runtime's initialisation.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

const LOAD_ADDRESS: u64 = 0x40_0000;
const ELF_HEADER: usize = 64;
const PROGRAM_HEADER: usize = 56;

/// `mov edi, code; mov eax, 231 (exit_group); syscall`
fn exit_code_bytes(code: u8) -> [u8; 12] {
    [0xbf, code, 0, 0, 0, 0xb8, 231, 0, 0, 0, 0x0f, 0x05]
}

/// The whole file: ELF header, one `PT_LOAD` program header covering the file, the code.
#[must_use]
pub fn exit_program(code: u8) -> Vec<u8> {
    let text = exit_code_bytes(code);
    let entry_offset = ELF_HEADER + PROGRAM_HEADER;
    let size = (entry_offset + text.len()) as u64;
    let mut elf = Vec::with_capacity(entry_offset + text.len());
    // e_ident: magic, 64-bit, little endian, version 1, System V ABI, padding.
    elf.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    elf.extend_from_slice(&2u16.to_le_bytes()); // e_type: ET_EXEC
    elf.extend_from_slice(&0x3eu16.to_le_bytes()); // e_machine: x86-64
    elf.extend_from_slice(&1u32.to_le_bytes()); // e_version
    elf.extend_from_slice(&(LOAD_ADDRESS + entry_offset as u64).to_le_bytes()); // e_entry
    elf.extend_from_slice(&(ELF_HEADER as u64).to_le_bytes()); // e_phoff
    elf.extend_from_slice(&0u64.to_le_bytes()); // e_shoff: no sections
    elf.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    elf.extend_from_slice(&(ELF_HEADER as u16).to_le_bytes()); // e_ehsize
    elf.extend_from_slice(&(PROGRAM_HEADER as u16).to_le_bytes()); // e_phentsize
    elf.extend_from_slice(&1u16.to_le_bytes()); // e_phnum
    elf.extend_from_slice(&[0; 6]); // e_shentsize, e_shnum, e_shstrndx
    elf.extend_from_slice(&1u32.to_le_bytes()); // p_type: PT_LOAD
    elf.extend_from_slice(&5u32.to_le_bytes()); // p_flags: R + X
    elf.extend_from_slice(&0u64.to_le_bytes()); // p_offset
    elf.extend_from_slice(&LOAD_ADDRESS.to_le_bytes()); // p_vaddr
    elf.extend_from_slice(&LOAD_ADDRESS.to_le_bytes()); // p_paddr
    elf.extend_from_slice(&size.to_le_bytes()); // p_filesz
    elf.extend_from_slice(&size.to_le_bytes()); // p_memsz
    elf.extend_from_slice(&0x1000u64.to_le_bytes()); // p_align
    elf.extend_from_slice(&text);
    elf
}

/// The program the spawn storm runs, and how it was made (for the report).
#[derive(Clone, Debug)]
pub struct SpawnProgram {
    pub path: PathBuf,
    pub description: String,
}

/// Writes the exit-0 program into `dir`. Off x86-64 the hand-made ELF cannot run: the storm
/// falls back to `/bin/true` and the report says so.
pub fn write_spawn_program(dir: &Path) -> Result<SpawnProgram> {
    if !cfg!(target_arch = "x86_64") {
        return Ok(SpawnProgram {
            path: PathBuf::from("/bin/true"),
            description: "/bin/true (dynamic; the hand-made ELF is x86-64 only)".into(),
        });
    }
    let path = dir.join("exit0");
    let bytes = exit_program(0);
    std::fs::write(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(SpawnProgram {
        path,
        description: format!("static ELF, {} bytes, exit_group(0) only", bytes.len()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_point_at_the_code() {
        let elf = exit_program(3);
        assert_eq!(elf.len(), 132);
        let entry = u64::from_le_bytes(elf[24..32].try_into().unwrap());
        assert_eq!(entry - LOAD_ADDRESS, 120);
        assert_eq!(&elf[120..122], &[0xbf, 3]);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_program_runs_and_exits_with_its_code() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("coroner-elf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("exit3");
        std::fs::write(&path, exit_program(3)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let status = std::process::Command::new(&path).status().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(status.code(), Some(3));
    }
}
