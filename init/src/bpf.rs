//! eBPF programs written in Rust: a small assembler (the instruction encodings of the kernel's
//! `include/uapi/linux/bpf.h` and `bpf_common.h`, with labels for jumps) and the programs the
//! init attaches to the `raw_syscalls` tracepoints for `[observe]`. No compiler toolchain is
//! involved: the programs are instruction arrays built here and checked by the kernel's
//! verifier at load time.
//!
//! The programs (raw tracepoint context: `args[0]` is `struct pt_regs *`, `args[1]` the system
//! call number at `sys_enter` and its return value at `sys_exit`):
//!
//! - [`enter_program`] on `sys_enter`: calls from any cgroup but the runtime's are ignored
//!   (`bpf_get_current_cgroup_id`); the call's counter (`counts[nr]`, an array map) is
//!   incremented atomically; with latency on, the thread's id, start time and call number are
//!   stored in its slot (`starts[tid % IN_FLIGHT]`, an array map: no hashing, no locks).
//! - [`exit_program`] on `sys_exit` (latency only): if the slot is the thread's, the elapsed
//!   time since its entry goes into its log2 bucket, `latency[nr * 32 + bucket]`, and the slot
//!   is freed (a call that never returns, `exit_group`, leaves it to be reused).

/// Registers. `R0` return values, `R1`–`R5` arguments (clobbered by calls), `R6`–`R9` kept
/// across calls, `R10` the read-only frame pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reg(pub u8);
pub const R0: Reg = Reg(0);
pub const R1: Reg = Reg(1);
pub const R2: Reg = Reg(2);
pub const R3: Reg = Reg(3);
pub const R4: Reg = Reg(4);
pub const R5: Reg = Reg(5);
pub const R6: Reg = Reg(6);
pub const R7: Reg = Reg(7);
pub const R8: Reg = Reg(8);
pub const R9: Reg = Reg(9);
pub const R10: Reg = Reg(10);

// Instruction classes.
const LD: u8 = 0x00;
const LDX: u8 = 0x01;
const STX: u8 = 0x03;
const JMP: u8 = 0x05;
const ALU64: u8 = 0x07;
// Sizes.
pub const W: u8 = 0x00;
pub const DW: u8 = 0x18;
// Modes.
const IMM: u8 = 0x00;
const MEM: u8 = 0x60;
const ATOMIC: u8 = 0xc0;
// Sources.
const K: u8 = 0x00;
const X: u8 = 0x08;
// ALU operations.
pub const ADD: u8 = 0x00;
pub const SUB: u8 = 0x10;
pub const AND: u8 = 0x50;
pub const LSH: u8 = 0x60;
pub const RSH: u8 = 0x70;
pub const MOV: u8 = 0xb0;
// Jump operations.
pub const JEQ: u8 = 0x10;
pub const JGT: u8 = 0x20;
pub const JNE: u8 = 0x50;
pub const JLE: u8 = 0xb0;
const CALL: u8 = 0x80;
const EXIT: u8 = 0x90;
/// `src_reg` of a 64-bit immediate load that holds a map file descriptor.
const PSEUDO_MAP_FD: u8 = 1;

/// Helper functions (`enum bpf_func_id`).
pub const MAP_LOOKUP_ELEM: i32 = 1;
pub const KTIME_GET_NS: i32 = 5;
pub const GET_CURRENT_PID_TGID: i32 = 14;
pub const GET_CURRENT_CGROUP_ID: i32 = 80;

/// One instruction (`struct bpf_insn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    pub dst: u8,
    pub src: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    /// The 8 bytes the kernel reads (x86-64 and arm64: little endian; `dst_reg` in the low
    /// nibble).
    pub fn encode(&self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = (self.src << 4) | (self.dst & 0x0f);
        b[2..4].copy_from_slice(&self.off.to_le_bytes());
        b[4..8].copy_from_slice(&self.imm.to_le_bytes());
        b
    }
}

/// A jump target, placed with [`Asm::label`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label(usize);

/// Builds a program: instructions in order, jumps to labels resolved by [`Asm::finish`].
#[derive(Debug, Default)]
pub struct Asm {
    insns: Vec<Insn>,
    /// Instruction index → the label it jumps to.
    fixups: Vec<(usize, Label)>,
    labels: Vec<Option<usize>>,
}

/// A program that cannot be assembled: a label jumped to but never placed, or too far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsmError(pub String);

impl Asm {
    pub fn new() -> Self {
        Asm::default()
    }

    fn push(&mut self, code: u8, dst: Reg, src: u8, off: i16, imm: i32) -> &mut Self {
        self.insns.push(Insn {
            code,
            dst: dst.0,
            src,
            off,
            imm,
        });
        self
    }

    /// A label to place later.
    pub fn new_label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    /// Places `l` at the next instruction.
    pub fn label(&mut self, l: Label) -> &mut Self {
        self.labels[l.0] = Some(self.insns.len());
        self
    }

    /// `dst = src` (64-bit).
    pub fn mov64_reg(&mut self, dst: Reg, src: Reg) -> &mut Self {
        self.push(ALU64 | MOV | X, dst, src.0, 0, 0)
    }

    /// `dst = imm` (sign-extended to 64 bits).
    pub fn mov64_imm(&mut self, dst: Reg, imm: i32) -> &mut Self {
        self.push(ALU64 | MOV | K, dst, 0, 0, imm)
    }

    /// `dst op= imm` (64-bit).
    pub fn alu64_imm(&mut self, op: u8, dst: Reg, imm: i32) -> &mut Self {
        self.push(ALU64 | op | K, dst, 0, 0, imm)
    }

    /// `dst op= src` (64-bit).
    pub fn alu64_reg(&mut self, op: u8, dst: Reg, src: Reg) -> &mut Self {
        self.push(ALU64 | op | X, dst, src.0, 0, 0)
    }

    /// `dst = imm64`: two instruction slots.
    pub fn ld_imm64(&mut self, dst: Reg, imm: u64) -> &mut Self {
        self.ld_imm64_raw(dst, 0, imm)
    }

    /// `dst = map` for the map open as `fd`: the kernel replaces the descriptor with the map.
    pub fn ld_map_fd(&mut self, dst: Reg, fd: i32) -> &mut Self {
        self.ld_imm64_raw(dst, PSEUDO_MAP_FD, fd as u32 as u64)
    }

    fn ld_imm64_raw(&mut self, dst: Reg, src: u8, imm: u64) -> &mut Self {
        self.push(LD | IMM | DW, dst, src, 0, imm as u32 as i32);
        self.push(0, Reg(0), 0, 0, (imm >> 32) as u32 as i32)
    }

    /// `dst = *(size *)(src + off)`.
    pub fn ldx(&mut self, size: u8, dst: Reg, src: Reg, off: i16) -> &mut Self {
        self.push(LDX | MEM | size, dst, src.0, off, 0)
    }

    /// `*(size *)(dst + off) = src`.
    pub fn stx(&mut self, size: u8, dst: Reg, off: i16, src: Reg) -> &mut Self {
        self.push(STX | MEM | size, dst, src.0, off, 0)
    }

    /// `lock *(u64 *)(dst + off) += src`.
    pub fn atomic_add64(&mut self, dst: Reg, off: i16, src: Reg) -> &mut Self {
        self.push(STX | ATOMIC | DW, dst, src.0, off, i32::from(ADD))
    }

    /// `if dst op imm goto l` (64-bit compare, `imm` sign-extended).
    pub fn jmp_imm(&mut self, op: u8, dst: Reg, imm: i32, l: Label) -> &mut Self {
        self.fixups.push((self.insns.len(), l));
        self.push(JMP | op | K, dst, 0, 0, imm)
    }

    /// `if dst op src goto l` (64-bit compare of two registers).
    pub fn jmp_reg(&mut self, op: u8, dst: Reg, src: Reg, l: Label) -> &mut Self {
        self.fixups.push((self.insns.len(), l));
        self.push(JMP | op | X, dst, src.0, 0, 0)
    }

    /// `goto l`.
    pub fn ja(&mut self, l: Label) -> &mut Self {
        self.fixups.push((self.insns.len(), l));
        self.push(JMP, Reg(0), 0, 0, 0)
    }

    /// Calls helper `id`: arguments in R1–R5, the result in R0.
    pub fn call(&mut self, id: i32) -> &mut Self {
        self.push(JMP | CALL, Reg(0), 0, 0, id)
    }

    pub fn exit(&mut self) -> &mut Self {
        self.push(JMP | EXIT, Reg(0), 0, 0, 0)
    }

    /// The instructions, jumps resolved (offsets count from the next instruction).
    pub fn finish(mut self) -> Result<Vec<Insn>, AsmError> {
        for &(at, l) in &self.fixups {
            let target = self.labels[l.0].ok_or_else(|| {
                AsmError(format!("instruction {at} jumps to a label never placed"))
            })?;
            let off = target as i64 - at as i64 - 1;
            self.insns[at].off = i16::try_from(off)
                .map_err(|_| AsmError(format!("instruction {at}: jump of {off} is too far")))?;
        }
        Ok(self.insns)
    }
}

/// The bytes of a program, for `BPF_PROG_LOAD`.
pub fn encode(insns: &[Insn]) -> Vec<u8> {
    insns.iter().flat_map(Insn::encode).collect()
}

/// Counter slots per system call number: x86-64's and arm64's numbers are below 512 (the
/// highest in 6.1 is 450 on both); calls numbered higher (x32, or invalid) are not counted.
pub const MAX_SYSCALLS: u32 = 512;

/// The stack slot of a 4-byte map key.
const KEY: i16 = -4;

/// Ignores (returns from) everything not running in cgroup `cgroup_id`. Clobbers R0–R5.
fn only_cgroup(a: &mut Asm, cgroup_id: u64, out: Label) {
    // The id is 64 bits wide, more than a jump's immediate: compare registers.
    a.call(GET_CURRENT_CGROUP_ID)
        .ld_imm64(R1, cgroup_id)
        .jmp_reg(JNE, R0, R1, out);
}

/// `sys_enter`: counts the call; with `starts` (latency on), records when it started in the
/// thread's slot.
pub fn enter_program(
    cgroup_id: u64,
    counts: i32,
    starts: Option<i32>,
) -> Result<Vec<Insn>, AsmError> {
    let mut a = Asm::new();
    let out = a.new_label();
    a.mov64_reg(R6, R1);
    only_cgroup(&mut a, cgroup_id, out);
    // R7 = the call number (args[1]); out of the table's range: not counted.
    a.ldx(DW, R7, R6, 8)
        .jmp_imm(JGT, R7, MAX_SYSCALLS as i32 - 1, out)
        .stx(W, R10, KEY, R7)
        .ld_map_fd(R1, counts)
        .mov64_reg(R2, R10)
        .alu64_imm(ADD, R2, i32::from(KEY))
        .call(MAP_LOOKUP_ELEM)
        .jmp_imm(JEQ, R0, 0, out)
        .mov64_imm(R1, 1)
        .atomic_add64(R0, 0, R1);
    if let Some(starts) = starts {
        // starts[tid % IN_FLIGHT] = { tid, now, nr }
        thread_slot(&mut a, starts, out);
        a.mov64_reg(R6, R0)
            .call(KTIME_GET_NS)
            .stx(DW, R6, SLOT_TID, R8)
            .stx(DW, R6, SLOT_START, R0)
            .stx(DW, R6, SLOT_NR, R7);
    }
    a.label(out).mov64_imm(R0, 0).exit();
    a.finish()
}

/// Threads whose calls are timed at once: a thread's slot is its id modulo this. Two threads
/// in calls at the same time with the same slot: the later one's start replaces the earlier
/// one's, whose latency is then not recorded (its count still is).
pub const IN_FLIGHT: u32 = 4096;

/// Offsets in a slot (24 bytes): the thread id, the start time (ns), the call number.
const SLOT_TID: i16 = 0;
const SLOT_START: i16 = 8;
const SLOT_NR: i16 = 16;
/// The size of a slot.
pub const SLOT_BYTES: u32 = 24;

/// R0 = the current thread's slot in `starts` (out when there is none), R8 = its thread id.
/// Clobbers R1–R5.
fn thread_slot(a: &mut Asm, starts: i32, out: Label) {
    // The low 32 bits of pid_tgid are the thread id.
    a.call(GET_CURRENT_PID_TGID)
        .mov64_reg(R8, R0)
        .alu64_imm(LSH, R8, 32)
        .alu64_imm(RSH, R8, 32)
        .mov64_reg(R1, R8)
        .alu64_imm(AND, R1, IN_FLIGHT as i32 - 1)
        .stx(W, R10, KEY, R1)
        .ld_map_fd(R1, starts)
        .mov64_reg(R2, R10)
        .alu64_imm(ADD, R2, i32::from(KEY))
        .call(MAP_LOOKUP_ELEM)
        .jmp_imm(JEQ, R0, 0, out);
}

/// R9 = floor(log2(R0)) (0 for 0), without a branch: halving steps of 32, 16, 8, 4, 2 and 1
/// bits, each taken when the bits above are not all zero. A branch per step makes the verifier
/// walk up to 2^6 paths: loading both programs took 12 ms with them, 10 ms without (TCG,
/// measured). Clobbers R0, R1, R5.
fn log2(a: &mut Asm) {
    // R5 = 2^32 - 1: for 0 <= t < 2^32, (t + R5) >> 32 is 1 if t > 0, else 0.
    a.ld_imm64(R5, 0xffff_ffff).mov64_imm(R9, 0);
    for bits in [5, 4, 3, 2, 1, 0] {
        a.mov64_reg(R1, R0)
            .alu64_imm(RSH, R1, 1 << bits)
            .alu64_reg(ADD, R1, R5)
            .alu64_imm(RSH, R1, 32)
            // R1 = the step (1 << bits) or 0
            .alu64_imm(LSH, R1, bits)
            .alu64_reg(RSH, R0, R1)
            .alu64_reg(ADD, R9, R1);
    }
}

/// `sys_exit`: the time since the thread's `sys_enter` goes into its log2 bucket.
pub fn exit_program(cgroup_id: u64, starts: i32, latency: i32) -> Result<Vec<Insn>, AsmError> {
    let mut a = Asm::new();
    let out = a.new_label();
    only_cgroup(&mut a, cgroup_id, out);
    thread_slot(&mut a, starts, out);
    // The slot is this thread's (not another's with the same slot, nor empty): take it.
    a.mov64_reg(R6, R0)
        .ldx(DW, R1, R6, SLOT_TID)
        .jmp_reg(JNE, R1, R8, out)
        .ldx(DW, R7, R6, SLOT_START)
        .ldx(DW, R8, R6, SLOT_NR)
        .mov64_imm(R1, 0)
        .stx(DW, R6, SLOT_TID, R1)
        .call(KTIME_GET_NS)
        .alu64_reg(SUB, R0, R7);
    log2(&mut a);
    let capped = a.new_label();
    let last = stratos_wire::LATENCY_BUCKETS as i32 - 1;
    a.jmp_imm(JLE, R9, last, capped)
        .mov64_imm(R9, last)
        .label(capped)
        // latency[nr * 32 + bucket] += 1
        .alu64_imm(
            LSH,
            R8,
            stratos_wire::LATENCY_BUCKETS.trailing_zeros() as i32,
        )
        .alu64_reg(ADD, R8, R9)
        .stx(W, R10, KEY, R8)
        .ld_map_fd(R1, latency)
        .mov64_reg(R2, R10)
        .alu64_imm(ADD, R2, i32::from(KEY))
        .call(MAP_LOOKUP_ELEM)
        .jmp_imm(JEQ, R0, 0, out)
        .mov64_imm(R1, 1)
        .atomic_add64(R0, 0, R1)
        .label(out)
        .mov64_imm(R0, 0)
        .exit();
    a.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `f` assembles (one instruction, or two for the 16-byte loads) against the bytes the
    /// kernel's macro `mac` (`include/linux/filter.h`) produces, as `struct bpf_insn` in
    /// memory on a little-endian machine (x86-64, arm64).
    #[track_caller]
    fn encodes(mac: &str, f: fn(&mut Asm) -> &mut Asm, want: &[[u8; 8]]) {
        let mut a = Asm::new();
        f(&mut a);
        let got: Vec<[u8; 8]> = a.finish().unwrap().iter().map(Insn::encode).collect();
        assert_eq!(got, want, "{mac}");
    }

    #[test]
    fn moves_and_arithmetic_encode_as_the_kernel_macros() {
        encodes(
            "BPF_MOV64_REG(BPF_REG_6, BPF_REG_1)",
            |a| a.mov64_reg(R6, R1),
            &[[0xbf, 0x16, 0, 0, 0, 0, 0, 0]],
        );
        encodes(
            "BPF_MOV64_IMM(BPF_REG_0, 0)",
            |a| a.mov64_imm(R0, 0),
            &[[0xb7, 0x00, 0, 0, 0, 0, 0, 0]],
        );
        encodes(
            "BPF_MOV64_IMM(BPF_REG_4, -1)",
            |a| a.mov64_imm(R4, -1),
            &[[0xb7, 0x04, 0, 0, 0xff, 0xff, 0xff, 0xff]],
        );
        encodes(
            "BPF_ALU64_IMM(BPF_ADD, BPF_REG_2, -4)",
            |a| a.alu64_imm(ADD, R2, -4),
            &[[0x07, 0x02, 0, 0, 0xfc, 0xff, 0xff, 0xff]],
        );
        encodes(
            "BPF_ALU64_IMM(BPF_RSH, BPF_REG_1, 32)",
            |a| a.alu64_imm(RSH, R1, 32),
            &[[0x77, 0x01, 0, 0, 32, 0, 0, 0]],
        );
        encodes(
            "BPF_ALU64_IMM(BPF_AND, BPF_REG_1, 4095)",
            |a| a.alu64_imm(AND, R1, 4095),
            &[[0x57, 0x01, 0, 0, 0xff, 0x0f, 0, 0]],
        );
        encodes(
            "BPF_ALU64_IMM(BPF_LSH, BPF_REG_8, 5)",
            |a| a.alu64_imm(LSH, R8, 5),
            &[[0x67, 0x08, 0, 0, 5, 0, 0, 0]],
        );
        encodes(
            "BPF_ALU64_REG(BPF_SUB, BPF_REG_0, BPF_REG_7)",
            |a| a.alu64_reg(SUB, R0, R7),
            &[[0x1f, 0x70, 0, 0, 0, 0, 0, 0]],
        );
        encodes(
            "BPF_ALU64_REG(BPF_ADD, BPF_REG_8, BPF_REG_9)",
            |a| a.alu64_reg(ADD, R8, R9),
            &[[0x0f, 0x98, 0, 0, 0, 0, 0, 0]],
        );
    }

    #[test]
    fn memory_accesses_encode_as_the_kernel_macros() {
        encodes(
            "BPF_LDX_MEM(BPF_DW, BPF_REG_7, BPF_REG_6, 8)",
            |a| a.ldx(DW, R7, R6, 8),
            &[[0x79, 0x67, 8, 0, 0, 0, 0, 0]],
        );
        encodes(
            "BPF_STX_MEM(BPF_W, BPF_REG_10, BPF_REG_7, -4)",
            |a| a.stx(W, R10, -4, R7),
            &[[0x63, 0x7a, 0xfc, 0xff, 0, 0, 0, 0]],
        );
        encodes(
            "BPF_STX_MEM(BPF_DW, BPF_REG_10, BPF_REG_0, -24)",
            |a| a.stx(DW, R10, -24, R0),
            &[[0x7b, 0x0a, 0xe8, 0xff, 0, 0, 0, 0]],
        );
        encodes(
            "BPF_ATOMIC_OP(BPF_DW, BPF_ADD, BPF_REG_0, BPF_REG_1, 0)",
            |a| a.atomic_add64(R0, 0, R1),
            &[[0xdb, 0x10, 0, 0, 0, 0, 0, 0]],
        );
    }

    #[test]
    fn calls_exits_and_wide_loads_encode_as_the_kernel_macros() {
        encodes(
            "BPF_EMIT_CALL(BPF_FUNC_get_current_cgroup_id)",
            |a| a.call(GET_CURRENT_CGROUP_ID),
            &[[0x85, 0, 0, 0, 80, 0, 0, 0]],
        );
        encodes(
            "BPF_EXIT_INSN()",
            |a| a.exit(),
            &[[0x95, 0, 0, 0, 0, 0, 0, 0]],
        );
        encodes(
            "BPF_LD_MAP_FD(BPF_REG_1, 7)",
            |a| a.ld_map_fd(R1, 7),
            &[[0x18, 0x11, 0, 0, 7, 0, 0, 0], [0; 8]],
        );
        encodes(
            "BPF_LD_IMM64(BPF_REG_1, 0x1122334455667788)",
            |a| a.ld_imm64(R1, 0x1122_3344_5566_7788),
            &[
                [0x18, 0x01, 0, 0, 0x88, 0x77, 0x66, 0x55],
                [0, 0, 0, 0, 0x44, 0x33, 0x22, 0x11],
            ],
        );
    }

    #[test]
    fn jumps_count_from_the_next_instruction() {
        let mut a = Asm::new();
        let out = a.new_label();
        let back = a.new_label();
        a.label(back)
            // BPF_JMP_IMM(BPF_JGT, BPF_REG_7, 511, 2)
            .jmp_imm(JGT, R7, 511, out)
            .mov64_imm(R0, 1)
            // BPF_JMP_IMM(BPF_JEQ, BPF_REG_0, 0, -3)
            .jmp_imm(JEQ, R0, 0, back)
            .label(out)
            .exit();
        let b: Vec<[u8; 8]> = a.finish().unwrap().iter().map(Insn::encode).collect();
        assert_eq!(b[0], [0x25, 0x07, 2, 0, 0xff, 0x01, 0, 0]);
        assert_eq!(b[2], [0x15, 0x00, 0xfd, 0xff, 0, 0, 0, 0]);
    }

    /// Runs straight-line ALU64 code (what [`log2`] emits) on registers.
    fn run_alu(insns: &[Insn], regs: &mut [u64; 11]) {
        let mut i = 0;
        while i < insns.len() {
            let n = insns[i];
            let (d, s) = (n.dst as usize, n.src as usize);
            if n.code == LD | IMM | DW {
                regs[d] = u64::from(n.imm as u32) | (u64::from(insns[i + 1].imm as u32) << 32);
                i += 2;
                continue;
            }
            assert_eq!(n.code & 0x07, ALU64, "not ALU64: {n:?}");
            let v = if n.code & X != 0 {
                regs[s]
            } else {
                n.imm as i64 as u64
            };
            regs[d] = match n.code & 0xf0 {
                ADD => regs[d].wrapping_add(v),
                SUB => regs[d].wrapping_sub(v),
                AND => regs[d] & v,
                LSH => regs[d] << (v & 63),
                RSH => regs[d] >> (v & 63),
                MOV => v,
                op => panic!("op {op:#x}"),
            };
            i += 1;
        }
    }

    #[test]
    fn log2_is_floor_log2_without_branches() {
        let mut a = Asm::new();
        log2(&mut a);
        let insns = a.finish().unwrap();
        assert!(insns.iter().all(|n| n.code & 0x07 != JMP), "a branch");
        let mut values = vec![0u64, 1, 2, 3, 4, 5, 1023, 1024, 1025, u64::MAX];
        values.extend((0..64).map(|b| 1u64 << b));
        values.extend((1..64).map(|b| (1u64 << b) - 1));
        values.extend((0..64).map(|b| (1u64 << b) | 1));
        for v in values {
            let mut regs = [0u64; 11];
            regs[0] = v;
            run_alu(&insns, &mut regs);
            let want = if v == 0 { 0 } else { u64::from(v.ilog2()) };
            assert_eq!(regs[9], want, "log2({v})");
        }
    }

    #[test]
    fn a_label_never_placed_is_an_error() {
        let mut a = Asm::new();
        let l = a.new_label();
        a.ja(l).exit();
        assert!(a.finish().unwrap_err().0.contains("never placed"));
    }

    /// The cgroup check compares registers (`BPF_JMP_REG(BPF_JNE, R0, R1, …)`), with the
    /// 64-bit id loaded whole.
    #[test]
    fn the_cgroup_filter_compares_all_64_bits() {
        let p = enter_program(0x0000_0001_0000_0042, 3, None).unwrap();
        let b: Vec<[u8; 8]> = p.iter().map(Insn::encode).collect();
        assert_eq!(b[1], [0x85, 0, 0, 0, 80, 0, 0, 0]);
        assert_eq!(b[2], [0x18, 0x01, 0, 0, 0x42, 0, 0, 0]);
        assert_eq!(b[3], [0, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(b[4][0], 0x5d, "JNE | X");
        assert_eq!(b[4][1], 0x10, "dst R0, src R1");
        // …to the final `r0 = 0; exit`.
        let to = 4 + 1 + i16::from_le_bytes([b[4][2], b[4][3]]) as usize;
        assert_eq!(b[to], [0xb7, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(to + 2, b.len());
    }

    /// The programs assemble, every jump lands inside, the map descriptors are where the
    /// kernel looks for them, and the last instruction is an exit.
    #[test]
    fn programs_are_well_formed() {
        for (p, fds) in [
            (enter_program(9, 3, None).unwrap(), vec![3]),
            (enter_program(9, 3, Some(4)).unwrap(), vec![3, 4]),
            (exit_program(9, 4, 5).unwrap(), vec![4, 5]),
        ] {
            assert!(p.len() < 4096);
            assert_eq!(p.last().unwrap().code, JMP | EXIT);
            let mut seen = Vec::new();
            for (i, insn) in p.iter().enumerate() {
                if insn.code & 0x07 == JMP && insn.code != JMP | CALL && insn.code != JMP | EXIT {
                    let to = i as i64 + 1 + i64::from(insn.off);
                    assert!((0..p.len() as i64).contains(&to), "insn {i} jumps to {to}");
                }
                if insn.code == LD | IMM | DW && insn.src == PSEUDO_MAP_FD {
                    seen.push(insn.imm);
                }
            }
            assert_eq!(seen, fds);
        }
    }
}
