/* micromix bench: a QEMU TCG plugin that counts every executed guest instruction exactly and
 * estimates Cortex-M4 cycles, split into segments by calls of a marker function.
 *
 *   qemu-system-arm ... -plugin ./libcount.so,arg=mark=0x1234,arg=out=counts.txt
 *
 * Every execution of the translation block that starts at the marker's address opens a new
 * segment (the harness calls the marker between layers). Output: one line per segment,
 * "seg <i> <instructions> <estimated cycles>", then "hist <mnemonic> <count>" lines. With
 * arg=tbs=<path> it also writes one line per translated block, to see where a count changes
 * between two placements of the same code: "tb <start> <end> <instructions> <cycles inside>
 * <executions> <cycles charged on entry: taken-branch penalties, minus pairings> <disassembly>"
 * (hex addresses; a block translated twice has two lines).
 *
 * Cycle model (Cortex-M4 TRM r0p1, table 3-1; documented in results/mcu_cost.md):
 *   data processing, MUL/MLA/SMLAD/SMULL/SMLAL, SSAT, SXTB16, IT ...   1
 *   LDR/STR single (any width)                                         2, 1 if the instruction
 *                                                                      executed before it was
 *                                                                      also a single load/store
 *   LDRD/STRD                                                          3
 *   LDM/STM/PUSH/POP of N registers                                    1 + N
 *   SDIV/UDIV                                                          7 (TRM: 2 to 12)
 *   branch not taken                                                   1
 *   branch taken (B, BL, BX, CBZ, POP {pc}, ...)                       1 + P, P = 2 (TRM: 1..3)
 *   TBB/TBH                                                            2 + P
 * A branch is taken when the next executed block does not start right after it. A block that
 * starts right after the last one (qemu ends blocks at 1 KB pages too) carries its load/store
 * pairing over, so a count does not depend on where the code lies; a block's end is taken from
 * its last instruction's encoding (thumb_size). Wait states, bus contention and the write buffer
 * are not modelled. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qemu_plugin_min.h"

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

#define MAX_SEG 4096
#define MAX_MNEM 512
#define P_TAKEN 2

typedef struct {
    uint64_t start, end; /* guest addresses: first byte, byte after the last instruction */
    uint32_t n, cyc;
    int is_mark, ends_branch, extra_taken; /* extra_taken: TBB/TBH cost 1 more when taken */
    int first_ls, last_ls; /* the first / last instruction is a single load/store */
    uint16_t *mnem;                          /* mnemonic index per instruction (histogram) */
    uint64_t execs, dyn_cyc; /* times executed; cycles charged on entry (penalty, pairing) */
    char *dis; /* the block's disassembly (tbs= dump only) */
} tbinfo;

static const char *tbs_path;
static tbinfo **all_tbs;
static size_t n_tbs, cap_tbs;

static uint64_t mark_addr = (uint64_t)-1;
static const char *out_path = "counts.txt";
static uint64_t seg_ins[MAX_SEG], seg_cyc[MAX_SEG];
static int seg;
static int pending_branch, pending_ls;
static uint64_t last_end;
static char *mnem_name[MAX_MNEM];
static uint64_t mnem_count[MAX_MNEM];
static int n_mnem;

static int mnem_index(const char *m)
{
    for (int i = 0; i < n_mnem; i++)
        if (strcmp(mnem_name[i], m) == 0)
            return i;
    if (n_mnem == MAX_MNEM)
        return MAX_MNEM - 1;
    mnem_name[n_mnem] = strdup(m);
    return n_mnem++;
}

static int starts(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

/* Registers in a "{r4, r5, lr}" list (a range "r4-r7" counts all of its registers). */
static int reg_list(const char *ops, int *has_pc)
{
    const char *p = strchr(ops, '{');
    int n = 0;
    *has_pc = 0;
    if (!p)
        return 1;
    for (p++; *p && *p != '}';) {
        while (*p == ' ' || *p == ',')
            p++;
        if (*p == '}' || !*p)
            break;
        const char *tok = p;
        while (*p && *p != ',' && *p != '}')
            p++;
        const char *dash = memchr(tok, '-', (size_t)(p - tok));
        if (starts(tok, "pc"))
            *has_pc = 1;
        if (dash && tok[0] == 'r' && dash[1] == 'r')
            n += atoi(dash + 2) - atoi(tok + 1) + 1;
        else
            n++;
    }
    return n;
}

/* Cycles of one instruction (not counting a taken-branch penalty), and whether it may branch. */
static int classify(const char *dis, char *mn, int prev_ls, int *is_ls, int *is_branch, int *tb)
{
    int i = 0;
    while (dis[i] && dis[i] != ' ' && dis[i] != '\t' && i < 31) {
        mn[i] = dis[i];
        i++;
    }
    mn[i] = 0;
    const char *ops = dis + i;
    char base[32];
    strcpy(base, mn);
    char *dot = strchr(base, '.');
    if (dot)
        *dot = 0; /* ldr.w -> ldr */
    *is_ls = 0;
    *is_branch = 0;
    *tb = 0;
    int has_pc = strstr(ops, "pc") != NULL;
    if (starts(base, "push") || starts(base, "pop") || starts(base, "ldm") || starts(base, "stm")) {
        int pc;
        int n = reg_list(ops, &pc);
        if (pc && (starts(base, "pop") || starts(base, "ldm")))
            *is_branch = 1;
        return 1 + n;
    }
    if (starts(base, "vpush") || starts(base, "vpop") || starts(base, "vldm") || starts(base, "vstm")) {
        int pc;
        return 1 + reg_list(ops, &pc);
    }
    if (starts(base, "ldrd") || starts(base, "strd"))
        return 3;
    if (starts(base, "ldr") || starts(base, "str") || starts(base, "vldr") || starts(base, "vstr")) {
        *is_ls = 1;
        if (starts(base, "ldr") && strstr(ops, "pc,") == ops + strspn(ops, " \t")) {
            *is_branch = 1; /* ldr pc, ... */
            return 2;
        }
        return prev_ls ? 1 : 2;
    }
    if (starts(base, "sdiv") || starts(base, "udiv"))
        return 7;
    if (starts(base, "tbb") || starts(base, "tbh")) {
        *is_branch = 1;
        *tb = 1;
        return 2;
    }
    if (starts(base, "cbz") || starts(base, "cbnz") || starts(base, "bx") || starts(base, "bl") ||
        (base[0] == 'b' && (base[1] == 0 || strlen(base) == 3))) {
        /* b, bl, blx, bx, b<cc> (beq, bne, ...): but not bic/bfi/bfc */
        if (!starts(base, "bic") && !starts(base, "bfi") && !starts(base, "bfc")) {
            *is_branch = 1;
            return 1;
        }
    }
    if ((starts(base, "mov") || starts(base, "add") || starts(base, "sub")) &&
        strncmp(ops + strspn(ops, " \t"), "pc", 2) == 0) {
        *is_branch = 1;
        return 1;
    }
    (void)has_pc;
    return 1;
}

static void on_tb(unsigned int vcpu, void *ud)
{
    tbinfo *t = ud;
    (void)vcpu;
    const int is_taken = pending_branch && t->start != last_end;
    const uint64_t taken = is_taken ? P_TAKEN + (uint64_t)(pending_branch == 2) : 0;
    seg_cyc[seg] += taken;
    const int paired = pending_ls && t->first_ls && t->start == last_end;
    t->execs++;
    t->dyn_cyc += taken - (uint64_t)paired;
    if (t->is_mark && seg < MAX_SEG - 1)
        seg++;
    seg_ins[seg] += t->n;
    seg_cyc[seg] += t->cyc - (uint32_t)paired; /* its first load/store follows one */
    for (uint32_t i = 0; i < t->n; i++)
        mnem_count[t->mnem[i]]++;
    pending_branch = t->ends_branch ? 1 + t->extra_taken : 0;
    pending_ls = t->last_ls;
    last_end = t->end;
}

/* The size of a Thumb instruction from its first halfword. qemu_plugin_insn_size is 2 too large
 * on the instruction before a 32-bit one that crosses a page: qemu reads that one's first
 * halfword to end the block there (insn_crosses_page), and the plugin layer appends every
 * read to the instruction being translated. */
static uint64_t thumb_size(const struct qemu_plugin_insn *in)
{
    const uint8_t *d = qemu_plugin_insn_data(in);
    if (qemu_plugin_insn_size(in) < 2)
        return qemu_plugin_insn_size(in);
    return (d[1] >> 3) >= 0x1d ? 4 : 2; /* 0b11101, 0b11110, 0b11111: a 32-bit encoding */
}

/* Keeps the block and its disassembly for the tbs= dump. */
static void keep_for_dump(tbinfo *t, struct qemu_plugin_tb *tb)
{
    if (n_tbs == cap_tbs) {
        cap_tbs = cap_tbs ? 2 * cap_tbs : 1024;
        all_tbs = realloc(all_tbs, cap_tbs * sizeof *all_tbs);
    }
    all_tbs[n_tbs++] = t;
    size_t len = 0;
    t->dis = calloc(1, 1);
    for (size_t i = 0; i < t->n; i++) {
        char *d = qemu_plugin_insn_disas(qemu_plugin_tb_get_insn(tb, i));
        len += strlen(d) + 3;
        t->dis = realloc(t->dis, len + 1);
        strcat(strcat(t->dis, d), " | ");
        free(d);
    }
}

static void on_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    size_t n = qemu_plugin_tb_n_insns(tb);
    tbinfo *t = calloc(1, sizeof *t);
    t->mnem = calloc(n ? n : 1, sizeof *t->mnem);
    t->start = qemu_plugin_tb_vaddr(tb);
    t->n = (uint32_t)n;
    t->is_mark = (t->start | 1) == (mark_addr | 1);
    int prev_ls = 0;
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *in = qemu_plugin_tb_get_insn(tb, i);
        char *dis = qemu_plugin_insn_disas(in);
        char mn[32];
        int ls, br, tbx;
        t->cyc += (uint32_t)classify(dis, mn, prev_ls, &ls, &br, &tbx);
        t->mnem[i] = (uint16_t)mnem_index(mn);
        if (i == 0)
            t->first_ls = ls && !br;
        prev_ls = ls && !br;
        t->last_ls = prev_ls;
        if (i + 1 == n) {
            t->ends_branch = br;
            t->extra_taken = tbx;
            t->end = qemu_plugin_insn_vaddr(in) + thumb_size(in);
        }
        free(dis);
    }
    if (tbs_path)
        keep_for_dump(t, tb);
    qemu_plugin_register_vcpu_tb_exec_cb(tb, on_tb, QEMU_PLUGIN_CB_NO_REGS, t);
}

static void on_exit_cb(qemu_plugin_id_t id, void *ud)
{
    (void)id;
    (void)ud;
    FILE *f = fopen(out_path, "w");
    if (!f) {
        qemu_plugin_outs("count: cannot write the output file\n");
        return;
    }
    for (int i = 0; i <= seg; i++)
        fprintf(f, "seg %d %llu %llu\n", i, (unsigned long long)seg_ins[i],
                (unsigned long long)seg_cyc[i]);
    for (int i = 0; i < n_mnem; i++)
        fprintf(f, "hist %s %llu\n", mnem_name[i], (unsigned long long)mnem_count[i]);
    fclose(f);
    FILE *g = tbs_path ? fopen(tbs_path, "w") : NULL;
    for (size_t i = 0; g && i < n_tbs; i++) {
        tbinfo *t = all_tbs[i];
        fprintf(g, "tb %llx %llx %u %u %llu %lld %s\n", (unsigned long long)t->start,
                (unsigned long long)t->end, t->n, t->cyc, (unsigned long long)t->execs,
                (long long)t->dyn_cyc, t->dis);
    }
    if (g)
        fclose(g);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc,
                                           char **argv)
{
    (void)info;
    for (int i = 0; i < argc; i++) {
        if (starts(argv[i], "mark="))
            mark_addr = strtoull(argv[i] + 5, NULL, 0);
        else if (starts(argv[i], "tbs="))
            tbs_path = strdup(argv[i] + 4);
        else if (starts(argv[i], "out="))
            out_path = strdup(argv[i] + 4);
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_trans);
    qemu_plugin_register_atexit_cb(id, on_exit_cb, NULL);
    return 0;
}
