//! The classic BPF program a policy compiles to, its serialisation for the init, and a small
//! interpreter to check what it decides.

use super::policy::{ArgCond, Op, Policy, RET_KILL_PROCESS};

/// The kernel's limit on a filter's length.
pub const BPF_MAXINSNS: usize = 4096;

// Classic BPF opcodes.
pub(super) const LD_W_ABS: u16 = 0x20;
const JMP_JA: u16 = 0x05;
const JMP_JEQ_K: u16 = 0x15;
const JMP_JGT_K: u16 = 0x25;
const JMP_JGE_K: u16 = 0x35;
const ALU_AND_K: u16 = 0x54;
const RET_K: u16 = 0x06;

/// One BPF instruction (`struct sock_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

impl Insn {
    pub(super) const fn new(code: u16, jt: u8, jf: u8, k: u32) -> Insn {
        Insn { code, jt, jf, k }
    }
}

/// Serialises a program as the init reads it: 8-byte little-endian records.
pub fn to_bytes(prog: &[Insn]) -> Vec<u8> {
    let mut out = Vec::with_capacity(prog.len() * 8);
    for i in prog {
        out.extend_from_slice(&i.code.to_le_bytes());
        out.push(i.jt);
        out.push(i.jf);
        out.extend_from_slice(&i.k.to_le_bytes());
    }
    out
}

pub fn from_bytes(b: &[u8]) -> Vec<Insn> {
    b.chunks_exact(8)
        .map(|c| {
            Insn::new(
                u16::from_le_bytes([c[0], c[1]]),
                c[2],
                c[3],
                u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
            )
        })
        .collect()
}

struct Asm {
    prog: Vec<Insn>,
}

/// Jump offsets are relative to the next instruction and must fit in a byte.
fn rel(from: usize, to: usize) -> Result<u8, String> {
    let d = to.checked_sub(from + 1).ok_or("backward jump")?;
    u8::try_from(d)
        .map_err(|_| format!("a rule's argument checks are too long ({d} instructions to skip)"))
}

impl Asm {
    fn push(&mut self, i: Insn) -> usize {
        self.prog.push(i);
        self.prog.len() - 1
    }

    /// Emits the checks of one condition; each failing branch jumps to `fail` (patched later).
    fn cond(&mut self, c: &ArgCond, fails: &mut Vec<(usize, bool)>) {
        let lo_off = 16 + 8 * c.index;
        let hi_off = lo_off + 4;
        let (vhi, vlo) = ((c.value >> 32) as u32, c.value as u32);
        match c.op {
            Op::Eq | Op::Ne | Op::MaskedEq => {
                let (mhi, mlo, thi, tlo) = if c.op == Op::MaskedEq {
                    (
                        (c.value >> 32) as u32,
                        c.value as u32,
                        (c.value_two >> 32) as u32,
                        c.value_two as u32,
                    )
                } else {
                    (u32::MAX, u32::MAX, vhi, vlo)
                };
                // hi word
                self.push(Insn::new(LD_W_ABS, 0, 0, hi_off));
                if mhi != u32::MAX {
                    self.push(Insn::new(ALU_AND_K, 0, 0, mhi));
                }
                if c.op == Op::Ne {
                    // hi != thi → match (skip the rest of this condition); else check lo.
                    // jeq thi ? next : skip-to-matched
                    let j = self.push(Insn::new(JMP_JEQ_K, 0, 0, thi));
                    // lo word
                    self.push(Insn::new(LD_W_ABS, 0, 0, lo_off));
                    let j2 = self.push(Insn::new(JMP_JEQ_K, 0, 0, tlo));
                    fails.push((j2, true)); // equal in both → condition fails
                    let end = self.prog.len();
                    self.prog[j].jf = rel(j, end).unwrap_or(0);
                    return;
                }
                let j = self.push(Insn::new(JMP_JEQ_K, 0, 0, thi));
                fails.push((j, false));
                self.push(Insn::new(LD_W_ABS, 0, 0, lo_off));
                if mlo != u32::MAX {
                    self.push(Insn::new(ALU_AND_K, 0, 0, mlo));
                }
                let j = self.push(Insn::new(JMP_JEQ_K, 0, 0, tlo));
                fails.push((j, false));
            }
            Op::Gt | Op::Ge | Op::Lt | Op::Le => {
                // Compare the high words first: decisive if different.
                // For > and >=: hi > vhi → ok; hi < vhi → fail (hi != vhi && !(hi > vhi)); equal → lo.
                // For < and <=: hi < vhi → ok; hi > vhi → fail.
                let greater = matches!(c.op, Op::Gt | Op::Ge);
                self.push(Insn::new(LD_W_ABS, 0, 0, hi_off));
                let j_gt = self.push(Insn::new(JMP_JGT_K, 0, 0, vhi)); // hi > vhi ?
                let j_eq = self.push(Insn::new(JMP_JEQ_K, 0, 0, vhi)); // hi == vhi ?
                                                                       // hi < vhi here.
                let j_lt_result = self.push(Insn::new(JMP_JA, 0, 0, 0));
                let lo_start = self.push(Insn::new(LD_W_ABS, 0, 0, lo_off));
                let lo_cmp = match c.op {
                    Op::Gt => self.push(Insn::new(JMP_JGT_K, 0, 0, vlo)), // jt ok
                    Op::Ge => self.push(Insn::new(JMP_JGE_K, 0, 0, vlo)),
                    Op::Lt => self.push(Insn::new(JMP_JGE_K, 0, 0, vlo)), // jt fail
                    _ => self.push(Insn::new(JMP_JGT_K, 0, 0, vlo)),      // Le: jt fail
                };
                let ok = self.prog.len();
                // Patch: jt of j_gt, jf of j_eq, the ja, and lo_cmp.
                self.prog[j_eq].jt = rel(j_eq, lo_start).unwrap_or(0);
                if greater {
                    self.prog[j_gt].jt = rel(j_gt, ok).unwrap_or(0);
                    fails.push((j_lt_result, false)); // hi < vhi → fail (ja patched to fail)
                    self.prog[lo_cmp].jt = rel(lo_cmp, ok).unwrap_or(0);
                    fails.push((lo_cmp, false));
                } else {
                    fails.push((j_gt, true)); // hi > vhi → fail
                    self.prog[j_lt_result].k = (ok - j_lt_result - 1) as u32; // hi < vhi → ok
                    fails.push((lo_cmp, true));
                    self.prog[lo_cmp].jf = rel(lo_cmp, ok).unwrap_or(0);
                }
            }
        }
    }
}

/// Compiles a policy into a BPF program. Errors name the rule that could not be compiled.
pub fn compile(p: &Policy) -> Result<Vec<Insn>, String> {
    let mut a = Asm { prog: Vec::new() };
    // Architecture check first: a filter's numbers mean nothing to another ABI.
    a.push(Insn::new(LD_W_ABS, 0, 0, 4));
    a.push(Insn::new(JMP_JEQ_K, 1, 0, p.arch.audit_arch()));
    a.push(Insn::new(RET_K, 0, 0, RET_KILL_PROCESS));
    a.push(Insn::new(LD_W_ABS, 0, 0, 0));
    // A second ABI's system calls (x32: nr | 0x40000000) would bypass per-number rules.
    if let Some(bit) = p.arch.second_abi_syscall_bit() {
        a.push(Insn::new(JMP_JGE_K, 0, 1, bit));
        a.push(Insn::new(RET_K, 0, 0, RET_KILL_PROCESS));
    }
    // Dispatch: jeq nr → ja body.
    let mut dispatch = Vec::new();
    for nr in p.rules.keys() {
        a.push(Insn::new(JMP_JEQ_K, 0, 1, *nr));
        let ja = a.push(Insn::new(JMP_JA, 0, 0, 0));
        dispatch.push((*nr, ja));
    }
    a.push(Insn::new(RET_K, 0, 0, p.default.ret()));
    for (nr, ja) in dispatch {
        let body = a.prog.len();
        a.prog[ja].k = (body - ja - 1) as u32;
        for r in &p.rules[&nr] {
            let mut fails = Vec::new();
            for c in &r.args {
                a.cond(c, &mut fails);
            }
            a.push(Insn::new(RET_K, 0, 0, r.action.ret()));
            let next = a.prog.len();
            for (at, on_true) in fails {
                let d = if a.prog[at].code == JMP_JA {
                    a.prog[at].k = (next - at - 1) as u32;
                    continue;
                } else {
                    rel(at, next).map_err(|e| format!("{}: {e}", r.origin))?
                };
                if on_true {
                    a.prog[at].jt = d;
                } else {
                    a.prog[at].jf = d;
                }
            }
        }
        // No rule matched: the default.
        a.push(Insn::new(RET_K, 0, 0, p.default.ret()));
    }
    if a.prog.len() > BPF_MAXINSNS {
        return Err(format!(
            "the filter has {} instructions, over the kernel's limit of {BPF_MAXINSNS}; remove rules or argument conditions",
            a.prog.len()
        ));
    }
    Ok(a.prog)
}

/// What a program decides for a call (a small classic-BPF interpreter, for tests and
/// `stratos seccomp check`).
pub fn run(prog: &[Insn], audit_arch: u32, nr: u32, args: [u64; 6]) -> u32 {
    let mut data = [0u8; 64];
    data[0..4].copy_from_slice(&nr.to_le_bytes());
    data[4..8].copy_from_slice(&audit_arch.to_le_bytes());
    for (i, a) in args.iter().enumerate() {
        data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
    }
    let mut acc: u32 = 0;
    let mut pc = 0usize;
    while pc < prog.len() {
        let i = prog[pc];
        pc += 1;
        match i.code {
            LD_W_ABS => {
                let o = i.k as usize;
                acc = u32::from_le_bytes(data[o..o + 4].try_into().expect("4 bytes"));
            }
            ALU_AND_K => acc &= i.k,
            JMP_JA => pc += i.k as usize,
            JMP_JEQ_K => pc += if acc == i.k { i.jt } else { i.jf } as usize,
            JMP_JGT_K => pc += if acc > i.k { i.jt } else { i.jf } as usize,
            JMP_JGE_K => pc += if acc >= i.k { i.jt } else { i.jf } as usize,
            RET_K => return i.k,
            other => panic!("unknown opcode {other:#x}"),
        }
    }
    panic!("program fell off its end")
}
