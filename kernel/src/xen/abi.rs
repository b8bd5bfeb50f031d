//! Xen's public ABI as this kernel uses it: xen-sys layouts and constants, checked against the headers.
//!
//! xen-sys 0.0.0-pre2 carries bindgen output of Xen's public headers; we take its structs and
//! constants (never its hypercall wrappers: see `hypercall`) and assert every layout we use
//! against the offsets of Xen 4.17's public headers (public/xen.h, public/arch-x86/xen.h,
//! public/arch-x86/xen-x86_64.h, public/sched.h, public/event_channel.h, public/vcpu.h, and the
//! shared rings of public/io/console.h and public/io/xs_wire.h).

pub use xen_sys::{
    evtchn_bind_ipi, evtchn_bind_virq, evtchn_close, evtchn_send, evtchn_unmask, mmu_update,
    mmuext_op, mmuext_op__bindgen_ty_1, mmuext_op__bindgen_ty_2, sched_shutdown, shared_info,
    start_info, trap_info, vcpu_info, vcpu_time_info,
};

pub use xen_sys::{
    __HYPERVISOR_console_io, __HYPERVISOR_event_channel_op, __HYPERVISOR_iret,
    __HYPERVISOR_memory_op, __HYPERVISOR_mmu_update, __HYPERVISOR_mmuext_op,
    __HYPERVISOR_physdev_op, __HYPERVISOR_sched_op, __HYPERVISOR_set_segment_base,
    __HYPERVISOR_set_timer_op, __HYPERVISOR_set_trap_table, __HYPERVISOR_stack_switch,
    __HYPERVISOR_update_va_mapping, __HYPERVISOR_vcpu_op, __HYPERVISOR_xen_version,
    CONSOLEIO_write, EVTCHNOP_bind_ipi, EVTCHNOP_bind_virq, EVTCHNOP_close, EVTCHNOP_send,
    EVTCHNOP_unmask, SCHEDOP_block, SCHEDOP_shutdown, SCHEDOP_yield, SHUTDOWN_crash,
    SHUTDOWN_poweroff, SHUTDOWN_reboot, FLAT_KERNEL_CS, FLAT_KERNEL_SS, FLAT_USER_CS64,
    FLAT_USER_SS64, MMUEXT_INVLPG_LOCAL, MMUEXT_INVLPG_MULTI, MMUEXT_NEW_BASEPTR,
    MMUEXT_NEW_USER_BASEPTR, MMUEXT_PIN_L1_TABLE, MMUEXT_PIN_L2_TABLE, MMUEXT_PIN_L3_TABLE,
    MMUEXT_PIN_L4_TABLE, MMUEXT_TLB_FLUSH_LOCAL, MMUEXT_TLB_FLUSH_MULTI, MMUEXT_UNPIN_TABLE,
    MMU_NORMAL_PT_UPDATE, SIF_INITDOMAIN, SIF_PRIVILEGED, VIRQ_TIMER,
};

/// log2 of the size of a page and of a frame: a 64-bit PV guest's pages, frame numbers (mfns,
/// pfns, `start_info`'s `*_mfn` fields) and page tables are all in 4 KiB units (Linux names the
/// same fact XEN_PAGE_SHIFT, include/xen/page.h). The kernel's one page-size definition: mm's
/// addresses, the model and the user ABI use it through `mm::addr`.
pub const PAGE_SHIFT: u32 = 12;
/// Size of one page (and frame) in bytes.
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;

/// Xen public/version.h: XENVER_version returns `major << 16 | minor`.
pub const XENVER_VERSION: u32 = 0;
/// Xen public/version.h: XENVER_extraversion fills a `char[16]`.
pub const XENVER_EXTRAVERSION: u32 = 1;
/// Size of `xen_extraversion_t`.
pub const XEN_EXTRAVERSION_LEN: usize = 16;

/// Xen public/xen.h: update_va_mapping flags. No flush, a flush of the whole TLB, or the one
/// address; `UVMF_LOCAL` (0) limits it to this vCPU.
pub const UVMF_NONE: u64 = 0;
pub const UVMF_TLB_FLUSH: u64 = 1;
pub const UVMF_INVLPG: u64 = 2;
pub const UVMF_LOCAL: u64 = 0;

/// `struct mmu_update` of Xen public/xen.h: `ptr` is the machine address of the entry with the
/// command (`MMU_NORMAL_PT_UPDATE`, ...) in its low two bits, `val` the new entry. Its own type
/// (xen-sys's has no derives); the layout is asserted against xen-sys's below.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(C)]
pub struct MmuUpdate {
    pub ptr: u64,
    pub val: u64,
}

/// Xen public/xen.h: DOMID_SELF, for mmu_update / mmuext_op on our own tables.
pub const DOMID_SELF: u16 = 0x7ff0;

/// Xen public/arch-x86/xen-x86_64.h: the read-only m2p table's fixed virtual address.
pub const MACH2PHYS_VIRT_START: u64 = 0xffff_8000_0000_0000;

/// The `magic` prefix of a 64-bit PV start_info (public/xen.h: "xen-<version>-<platform>").
pub const START_INFO_MAGIC: &[u8] = b"xen-3.0-x86_64";

/// trap_info.flags: events are masked on entry to the handler (public/arch-x86/xen.h TI_SET_IF).
pub const TRAP_INFO_MASK_EVENTS: u8 = 1 << 2;

/// Number of vcpu_info slots in shared_info (public/arch-x86/xen.h XEN_LEGACY_MAX_VCPUS).
pub const LEGACY_MAX_VCPUS: usize = 32;

/// Xen public/xen.h: __HYPERVISOR_callback_op (xen-sys lacks public/callback.h).
pub const HYPERVISOR_CALLBACK_OP: u32 = 30;
/// Xen public/arch-x86/xen-x86_64.h: set_segment_base selectors.
pub const SEGBASE_FS: u32 = 0;
pub const SEGBASE_GS_USER: u32 = 1;
/// The kernel's %gs base (Xen swaps it with the user's on every kernel/user switch).
pub const SEGBASE_GS_KERNEL: u32 = 2;
/// Xen public/vcpu.h: VCPUOP_initialise (a `vcpu_guest_context` for a PV guest; once per vCPU).
pub const VCPUOP_INITIALISE: u32 = 0;
/// Xen public/vcpu.h: VCPUOP_up (makes an initialised vCPU runnable).
pub const VCPUOP_UP: u32 = 1;
/// Xen public/vcpu.h: VCPUOP_is_up (1 if the vCPU is up, 0 if down; Xen's x86 do_vcpu_op
/// answers ENOENT for a vCPU the domain does not have).
pub const VCPUOP_IS_UP: u32 = 3;
/// Xen public/vcpu.h: VCPUOP_stop_periodic_timer.
pub const VCPUOP_STOP_PERIODIC_TIMER: u32 = 7;
/// Xen public/vcpu.h: VCPUOP_set_singleshot_timer (only on the calling vCPU itself).
pub const VCPUOP_SET_SINGLESHOT_TIMER: u32 = 8;
/// Xen public/vcpu.h: VCPUOP_send_nmi (an NMI to a vCPU of the calling domain).
pub const VCPUOP_SEND_NMI: u32 = 11;

/// Xen public/vcpu.h `struct vcpu_set_singleshot_timer`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct VcpuSetSingleshotTimer {
    /// Absolute system time in ns.
    pub timeout_abs_ns: u64,
    /// `VCPU_SSHOTTMR_*`; 0: a deadline already past fires at once.
    pub flags: u32,
}

/// Xen public/arch-x86/xen.h: `vcpu_guest_context.flags`. The vCPU starts in kernel mode, and
/// the failsafe and syscall callbacks mask events on entry (as CALLBACKF_mask_events does for
/// vCPU 0's, registered with callback_op).
pub use xen_sys::{VGCF_failsafe_disables_events, VGCF_in_kernel, VGCF_syscall_disables_events};

/// What Xen public/arch-x86/xen-x86_64.h calls `xen_pfn_to_cr3` (its "pfn" is a machine frame
/// for a PV guest): how a vCPU context names its page-table
/// base (`ctrlreg[3]`): the machine frame number shifted by 12.
pub const fn mfn_to_cr3(mfn: u64) -> u64 {
    mfn << 12
}

/// `struct cpu_user_regs` of Xen public/arch-x86/xen-x86_64.h: the registers a new vCPU starts
/// with. Its own type (xen-sys's is all unions); the layout is asserted against xen-sys's and
/// the header's offsets below. Each segment slot is 8 bytes: the selector in bits 0-15, and for
/// `cs` the saved upcall mask in bits 32-39, as in the frame of boot/entry.S.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuUserRegs {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rax: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub error_code: u32,
    pub entry_vector: u32,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
    pub es: u64,
    pub ds: u64,
    pub fs: u64,
    pub gs: u64,
}

/// `struct vcpu_guest_context` of Xen public/arch-x86/xen.h (x86_64): what VCPUOP_initialise
/// starts a PV vCPU with. Own type for the same reason as [`CpuUserRegs`].
#[repr(C)]
#[derive(Clone, Copy)]
pub struct VcpuGuestContext {
    pub fpu_ctxt: [u8; 512],
    pub flags: u64,
    pub user_regs: CpuUserRegs,
    /// The virtual IDT, indexed by vector (vector 2 is the NMI callback).
    pub trap_ctxt: [trap_info; 256],
    pub ldt_base: u64,
    pub ldt_ents: u64,
    pub gdt_frames: [u64; 16],
    pub gdt_ents: u64,
    pub kernel_ss: u64,
    pub kernel_sp: u64,
    /// `ctrlreg[3]`: the kernel's L4 (`xen_pfn_to_cr3`); `ctrlreg[1]` the user's (0: none).
    pub ctrlreg: [u64; 8],
    pub debugreg: [u64; 8],
    pub event_callback_eip: u64,
    pub failsafe_callback_eip: u64,
    pub syscall_callback_eip: u64,
    pub vm_assist: u64,
    pub fs_base: u64,
    pub gs_base_kernel: u64,
    pub gs_base_user: u64,
}

impl VcpuGuestContext {
    /// All zero: no FPU state (Xen gives the default control word), no LDT, no GDT frames.
    pub const fn zeroed() -> VcpuGuestContext {
        VcpuGuestContext {
            fpu_ctxt: [0; 512],
            flags: 0,
            user_regs: CpuUserRegs {
                r15: 0,
                r14: 0,
                r13: 0,
                r12: 0,
                rbp: 0,
                rbx: 0,
                r11: 0,
                r10: 0,
                r9: 0,
                r8: 0,
                rax: 0,
                rcx: 0,
                rdx: 0,
                rsi: 0,
                rdi: 0,
                error_code: 0,
                entry_vector: 0,
                rip: 0,
                cs: 0,
                rflags: 0,
                rsp: 0,
                ss: 0,
                es: 0,
                ds: 0,
                fs: 0,
                gs: 0,
            },
            trap_ctxt: [trap_info { vector: 0, flags: 0, cs: 0, address: 0 }; 256],
            ldt_base: 0,
            ldt_ents: 0,
            gdt_frames: [0; 16],
            gdt_ents: 0,
            kernel_ss: 0,
            kernel_sp: 0,
            ctrlreg: [0; 8],
            debugreg: [0; 8],
            event_callback_eip: 0,
            failsafe_callback_eip: 0,
            syscall_callback_eip: 0,
            vm_assist: 0,
            fs_base: 0,
            gs_base_kernel: 0,
            gs_base_user: 0,
        }
    }
}

/// Xen public/memory.h: XENMEM_machphys_mapping.
pub const XENMEM_MACHPHYS_MAPPING: u32 = 12;

/// Xen public/memory.h `struct xen_machphys_mapping`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MachphysMapping {
    pub v_start: u64,
    pub v_end: u64,
    pub max_mfn: u64,
}

/// Xen public/callback.h.
pub const CALLBACKOP_REGISTER: u32 = 0;
pub const CALLBACKTYPE_EVENT: u16 = 0;
pub const CALLBACKTYPE_FAILSAFE: u16 = 1;
pub const CALLBACKTYPE_SYSCALL: u16 = 2;
/// Xen public/callback.h: the NMI handler (Xen stores it as the vCPU's vector-2 trap entry).
pub const CALLBACKTYPE_NMI: u16 = 4;
pub const CALLBACKF_MASK_EVENTS: u16 = 1;

/// Xen public/callback.h `struct callback_register` (the address is a `xen_callback_t`,
/// an unsigned long on x86_64).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CallbackRegister {
    pub kind: u16,
    pub flags: u16,
    pub address: u64,
}

/// Xen public/io/console.h `struct xencons_interface`: the console page a DomU shares with
/// xenconsoled. Only the output ring is used (the guest reads no input).
#[repr(C)]
pub struct XenconsInterface {
    pub input: [u8; 1024],
    pub output: [u8; XENCONS_OUT_SIZE],
    pub in_cons: u32,
    pub in_prod: u32,
    pub out_cons: u32,
    pub out_prod: u32,
}

/// The size of `xencons_interface.out`, a power of two (the indices run free, masked by it).
pub const XENCONS_OUT_SIZE: usize = 2048;

/// Xen public/io/xs_wire.h `XENSTORE_RING_SIZE`.
pub const XENSTORE_RING_SIZE: usize = 1024;

/// Xen public/io/xs_wire.h `struct xenstore_domain_interface`: the store page, a request ring
/// to xenstored and a response ring back. (The fields that follow `rsp_prod` in newer headers,
/// `server_features` and `connection`, are not used here.)
#[repr(C)]
pub struct XenstoreDomainInterface {
    pub req: [u8; XENSTORE_RING_SIZE],
    pub rsp: [u8; XENSTORE_RING_SIZE],
    pub req_cons: u32,
    pub req_prod: u32,
    pub rsp_cons: u32,
    pub rsp_prod: u32,
}

/// Xen public/io/xs_wire.h `struct xsd_sockmsg`: the header of every xenstore message, followed
/// by `len` bytes of payload. Little-endian on x86.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XsdSockmsg {
    pub kind: u32,
    pub req_id: u32,
    /// 0: no transaction.
    pub tx_id: u32,
    pub len: u32,
}

impl XsdSockmsg {
    pub const SIZE: usize = 16;

    pub fn to_bytes(self) -> [u8; Self::SIZE] {
        let mut bytes = [0u8; Self::SIZE];
        for (chunk, word) in
            bytes.chunks_exact_mut(4).zip([self.kind, self.req_id, self.tx_id, self.len])
        {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        bytes
    }

    pub fn from_bytes(bytes: &[u8; Self::SIZE]) -> XsdSockmsg {
        let word =
            |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        XsdSockmsg { kind: word(0), req_id: word(4), tx_id: word(8), len: word(12) }
    }
}

/// Xen public/io/xs_wire.h `enum xsd_sockmsg_type`: the message types used here.
pub const XS_READ: u32 = 2;
pub const XS_WATCH_EVENT: u32 = 15;
pub const XS_ERROR: u32 = 16;
/// Xen public/io/xs_wire.h `XENSTORE_PAYLOAD_MAX`.
pub const XENSTORE_PAYLOAD_MAX: usize = 4096;

#[cfg(test)]
mod tests {
    use super::*;

    /// The offsets of `struct xencons_interface` in Xen 4.17's public/io/console.h.
    #[test]
    fn console_ring_matches_public_io_console_h() {
        assert_eq!(offset_of!(XenconsInterface, input), 0);
        assert_eq!(offset_of!(XenconsInterface, output), 1024);
        assert_eq!(offset_of!(XenconsInterface, in_cons), 3072);
        assert_eq!(offset_of!(XenconsInterface, in_prod), 3076);
        assert_eq!(offset_of!(XenconsInterface, out_cons), 3080);
        assert_eq!(offset_of!(XenconsInterface, out_prod), 3084);
        assert_eq!(size_of::<XenconsInterface>(), 3088);
        assert!(XENCONS_OUT_SIZE.is_power_of_two());
    }

    /// The offsets of `struct xenstore_domain_interface` and `struct xsd_sockmsg` in Xen 4.17's
    /// public/io/xs_wire.h.
    #[test]
    fn store_ring_matches_public_io_xs_wire_h() {
        assert_eq!(offset_of!(XenstoreDomainInterface, req), 0);
        assert_eq!(offset_of!(XenstoreDomainInterface, rsp), 1024);
        assert_eq!(offset_of!(XenstoreDomainInterface, req_cons), 2048);
        assert_eq!(offset_of!(XenstoreDomainInterface, req_prod), 2052);
        assert_eq!(offset_of!(XenstoreDomainInterface, rsp_cons), 2056);
        assert_eq!(offset_of!(XenstoreDomainInterface, rsp_prod), 2060);
        assert!(XENSTORE_RING_SIZE.is_power_of_two());
        assert_eq!(offset_of!(XsdSockmsg, kind), 0);
        assert_eq!(offset_of!(XsdSockmsg, req_id), 4);
        assert_eq!(offset_of!(XsdSockmsg, tx_id), 8);
        assert_eq!(offset_of!(XsdSockmsg, len), 12);
        assert_eq!(size_of::<XsdSockmsg>(), XsdSockmsg::SIZE);
    }

    #[test]
    fn xsd_sockmsg_round_trips_through_bytes() {
        let header = XsdSockmsg { kind: XS_READ, req_id: 7, tx_id: 0, len: 5 };
        let bytes = header.to_bytes();
        assert_eq!(bytes[..4], [2, 0, 0, 0]);
        assert_eq!(bytes[8..12], [0; 4], "no transaction");
        assert_eq!(XsdSockmsg::from_bytes(&bytes), header);
    }
    use core::mem::{offset_of, size_of};

    #[test]
    fn start_info_matches_public_xen_h() {
        assert_eq!(size_of::<start_info>(), 1168);
        assert_eq!(offset_of!(start_info, magic), 0);
        assert_eq!(offset_of!(start_info, nr_pages), 32);
        assert_eq!(offset_of!(start_info, shared_info), 40);
        assert_eq!(offset_of!(start_info, flags), 48);
        assert_eq!(offset_of!(start_info, store_mfn), 56);
        assert_eq!(offset_of!(start_info, store_evtchn), 64);
        assert_eq!(offset_of!(start_info, console), 72);
        assert_eq!(offset_of!(start_info, pt_base), 88);
        assert_eq!(offset_of!(start_info, nr_pt_frames), 96);
        assert_eq!(offset_of!(start_info, mfn_list), 104);
        assert_eq!(offset_of!(start_info, mod_start), 112);
        assert_eq!(offset_of!(start_info, mod_len), 120);
        assert_eq!(offset_of!(start_info, cmd_line), 128);
        assert_eq!(offset_of!(start_info, first_p2m_pfn), 1152);
        assert_eq!(offset_of!(start_info, nr_p2m_frames), 1160);
    }

    #[test]
    fn start_info_console_union_matches() {
        use xen_sys::{
            start_info__bindgen_ty_1 as Console, start_info__bindgen_ty_1__bindgen_ty_1 as DomU,
        };
        assert_eq!(size_of::<Console>(), 16);
        assert_eq!(offset_of!(DomU, mfn), 0);
        assert_eq!(offset_of!(DomU, evtchn), 8);
    }

    #[test]
    fn trap_info_matches_public_arch_x86_xen_h() {
        assert_eq!(size_of::<trap_info>(), 16);
        assert_eq!(offset_of!(trap_info, vector), 0);
        assert_eq!(offset_of!(trap_info, flags), 1);
        assert_eq!(offset_of!(trap_info, cs), 2);
        assert_eq!(offset_of!(trap_info, address), 8);
    }

    #[test]
    fn vcpu_info_and_shared_info_match() {
        assert_eq!(size_of::<vcpu_time_info>(), 32);
        assert_eq!(size_of::<vcpu_info>(), 64);
        assert_eq!(offset_of!(vcpu_info, evtchn_upcall_pending), 0);
        assert_eq!(offset_of!(vcpu_info, evtchn_upcall_mask), 1);
        assert_eq!(offset_of!(vcpu_info, evtchn_pending_sel), 8);
        assert_eq!(offset_of!(vcpu_info, arch), 16); // arch.cr2 is the first field
        assert_eq!(offset_of!(vcpu_info, time), 32);
        assert_eq!(offset_of!(shared_info, vcpu_info), 0);
        assert_eq!(offset_of!(shared_info, evtchn_pending), 2048);
        assert_eq!(offset_of!(shared_info, evtchn_mask), 2560);
        assert_eq!(offset_of!(shared_info, wc_version), 3072);
        assert_eq!(offset_of!(shared_info, wc_sec), 3076);
        assert_eq!(offset_of!(shared_info, wc_nsec), 3080);
        assert_eq!(offset_of!(shared_info, wc_sec_hi), 3084);
        assert_eq!(offset_of!(shared_info, arch), 3088);
        assert!(size_of::<shared_info>() as u64 <= PAGE_SIZE);
    }

    #[test]
    fn mmu_structs_match_public_xen_h() {
        assert_eq!(size_of::<mmu_update>(), 16);
        assert_eq!(offset_of!(mmu_update, ptr), 0);
        assert_eq!(offset_of!(mmu_update, val), 8);
        assert_eq!(size_of::<MmuUpdate>(), size_of::<mmu_update>());
        assert_eq!(offset_of!(MmuUpdate, ptr), offset_of!(mmu_update, ptr));
        assert_eq!(offset_of!(MmuUpdate, val), offset_of!(mmu_update, val));
        assert_eq!(size_of::<mmuext_op>(), 24);
        assert_eq!(offset_of!(mmuext_op, cmd), 0);
        assert_eq!(offset_of!(mmuext_op, arg1), 8);
        assert_eq!(offset_of!(mmuext_op, arg2), 16);
    }

    #[test]
    fn callback_register_matches_public_callback_h() {
        assert_eq!(size_of::<CallbackRegister>(), 16);
        assert_eq!(offset_of!(CallbackRegister, kind), 0);
        assert_eq!(offset_of!(CallbackRegister, flags), 2);
        assert_eq!(offset_of!(CallbackRegister, address), 8);
    }

    #[test]
    fn event_channel_structs_match_public_event_channel_h() {
        assert_eq!(size_of::<evtchn_bind_virq>(), 12);
        assert_eq!(offset_of!(evtchn_bind_virq, virq), 0);
        assert_eq!(offset_of!(evtchn_bind_virq, vcpu), 4);
        assert_eq!(offset_of!(evtchn_bind_virq, port), 8);
        assert_eq!(size_of::<evtchn_unmask>(), 4);
        assert_eq!((EVTCHNOP_bind_virq, EVTCHNOP_send, EVTCHNOP_unmask), (1, 4, 9));
        assert_eq!(VIRQ_TIMER, 0);
        assert_eq!(__HYPERVISOR_set_timer_op, 15);
    }

    /// Offsets of Xen 4.17's public/arch-x86/xen-x86_64.h (`struct cpu_user_regs`, 200 bytes)
    /// and public/arch-x86/xen.h (`struct vcpu_guest_context`, x86_64), and xen-sys's bindgen
    /// layout of both.
    #[test]
    fn vcpu_guest_context_matches_public_arch_x86_xen_h() {
        use xen_sys::{cpu_user_regs, vcpu_guest_context};
        assert_eq!(size_of::<CpuUserRegs>(), 200);
        assert_eq!(size_of::<CpuUserRegs>(), size_of::<cpu_user_regs>());
        assert_eq!(offset_of!(CpuUserRegs, rbp), 32);
        assert_eq!(offset_of!(CpuUserRegs, r11), 48);
        assert_eq!(offset_of!(CpuUserRegs, rax), 80);
        assert_eq!(offset_of!(CpuUserRegs, rdi), 112);
        assert_eq!(offset_of!(CpuUserRegs, error_code), offset_of!(cpu_user_regs, error_code));
        assert_eq!(offset_of!(CpuUserRegs, error_code), 120);
        assert_eq!(offset_of!(CpuUserRegs, rip), 128);
        assert_eq!(offset_of!(CpuUserRegs, cs), offset_of!(cpu_user_regs, cs));
        assert_eq!(offset_of!(cpu_user_regs, saved_upcall_mask), 136 + 4);
        assert_eq!(offset_of!(CpuUserRegs, rflags), 144);
        assert_eq!(offset_of!(CpuUserRegs, rsp), 152);
        assert_eq!(offset_of!(CpuUserRegs, ss), offset_of!(cpu_user_regs, ss));
        assert_eq!(offset_of!(CpuUserRegs, gs), offset_of!(cpu_user_regs, gs));
        assert_eq!(offset_of!(CpuUserRegs, gs), 192);

        assert_eq!(size_of::<VcpuGuestContext>(), 5168);
        assert_eq!(size_of::<VcpuGuestContext>(), size_of::<vcpu_guest_context>());
        macro_rules! same {
            ($($field:ident = $offset:expr),* $(,)?) => {$(
                assert_eq!(offset_of!(VcpuGuestContext, $field), $offset, stringify!($field));
                assert_eq!(
                    offset_of!(VcpuGuestContext, $field),
                    offset_of!(vcpu_guest_context, $field),
                    stringify!($field)
                );
            )*};
        }
        same!(
            flags = 512,
            user_regs = 520,
            trap_ctxt = 720,
            ldt_base = 4816,
            gdt_frames = 4832,
            gdt_ents = 4960,
            kernel_ss = 4968,
            kernel_sp = 4976,
            ctrlreg = 4984,
            debugreg = 5048,
            event_callback_eip = 5112,
            failsafe_callback_eip = 5120,
            syscall_callback_eip = 5128,
            vm_assist = 5136,
            fs_base = 5144,
            gs_base_kernel = 5152,
            gs_base_user = 5160,
        );
        assert_eq!((VGCF_in_kernel, VGCF_failsafe_disables_events), (1 << 2, 1 << 3));
        assert_eq!(VGCF_syscall_disables_events, 1 << 4);
        assert_eq!(mfn_to_cr3(0x1234), 0x123_4000);
    }

    #[test]
    fn vcpu_op_structs_and_numbers_match_public_vcpu_h() {
        assert_eq!(size_of::<VcpuSetSingleshotTimer>(), 16);
        assert_eq!(offset_of!(VcpuSetSingleshotTimer, flags), 8);
        assert_eq!((VCPUOP_INITIALISE, VCPUOP_UP, VCPUOP_IS_UP), (0, 1, 3));
        assert_eq!((VCPUOP_STOP_PERIODIC_TIMER, VCPUOP_SET_SINGLESHOT_TIMER), (7, 8));
        assert_eq!(__HYPERVISOR_vcpu_op, 24);
        assert_eq!(SEGBASE_GS_KERNEL, xen_sys::SEGBASE_GS_KERNEL);
        assert_eq!(size_of::<evtchn_bind_ipi>(), 8);
        assert_eq!(offset_of!(evtchn_bind_ipi, vcpu), 0);
        assert_eq!(offset_of!(evtchn_bind_ipi, port), 4);
        assert_eq!(EVTCHNOP_bind_ipi, 7);
        assert_eq!((size_of::<evtchn_close>(), EVTCHNOP_close), (4, 3));
    }

    #[test]
    fn machphys_mapping_matches_public_memory_h() {
        assert_eq!(size_of::<MachphysMapping>(), 24);
        assert_eq!(offset_of!(MachphysMapping, max_mfn), 16);
        assert_eq!(__HYPERVISOR_memory_op, 12);
    }

    #[test]
    fn small_argument_structs_match() {
        assert_eq!(size_of::<sched_shutdown>(), 4);
        assert_eq!(size_of::<evtchn_send>(), 4);
    }

    #[test]
    fn constants_match_public_headers() {
        assert_eq!(__HYPERVISOR_set_trap_table, 0);
        assert_eq!(__HYPERVISOR_mmu_update, 1);
        assert_eq!(__HYPERVISOR_update_va_mapping, 14);
        assert_eq!(__HYPERVISOR_xen_version, 17);
        assert_eq!(__HYPERVISOR_console_io, 18);
        assert_eq!(__HYPERVISOR_iret, 23);
        assert_eq!(__HYPERVISOR_mmuext_op, 26);
        assert_eq!(__HYPERVISOR_sched_op, 29);
        assert_eq!(__HYPERVISOR_event_channel_op, 32);
        assert_eq!(__HYPERVISOR_physdev_op, 33);
        assert_eq!(FLAT_KERNEL_CS, 0xe033);
        assert_eq!((FLAT_USER_CS64, FLAT_USER_SS64, FLAT_KERNEL_SS), (0xe033, 0xe02b, 0xe02b));
        assert_eq!((__HYPERVISOR_stack_switch, __HYPERVISOR_set_segment_base), (3, 25));
        assert_eq!(SCHEDOP_shutdown, 2);
        assert_eq!((SHUTDOWN_poweroff, SHUTDOWN_reboot, SHUTDOWN_crash), (0, 1, 3));
        assert_eq!(SIF_INITDOMAIN, 2);
        assert_eq!(xen_sys::__MACH2PHYS_VIRT_START as u64, MACH2PHYS_VIRT_START);
    }
}
