/* A QEMU TCG plugin that counts executed guest instructions exactly between
 * two marker addresses (Debian's QEMU runs plugins but ships none):
 *
 *   qemu-system-arm ... -plugin icount_plugin.so,start=0x1234,stop=0x1240
 *
 * Every time the instruction at `stop` executes, it prints
 * "mcuq-icount: N" on stderr, N being the instructions executed since the
 * instruction at `start` last executed (start's included, stop's not).
 *
 * QEMU's plugin header is not packaged, so the few declarations of its
 * (version 1, QEMU 7.x) C API this plugin uses are written out below. */
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t; /* not read */
struct qemu_plugin_tb;
struct qemu_plugin_insn;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS };
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *insn);
void qemu_plugin_register_vcpu_insn_exec_inline(struct qemu_plugin_insn *insn, enum qemu_plugin_op op, void *ptr,
                                                uint64_t imm);
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *insn, qemu_plugin_vcpu_udata_cb_t cb,
                                            enum qemu_plugin_cb_flags flags, void *userdata);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

static uint64_t executed, start_address, stop_address;

static void on_start(unsigned int vcpu_index, void *userdata) {
  (void)vcpu_index;
  (void)userdata;
  executed = 0;
}

static void on_stop(unsigned int vcpu_index, void *userdata) {
  (void)vcpu_index;
  (void)userdata;
  fprintf(stderr, "mcuq-icount: %" PRIu64 "\n", executed);
  fflush(stderr);
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
  size_t i, n = qemu_plugin_tb_n_insns(tb);
  (void)id;
  for (i = 0; i < n; ++i) {
    struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
    const uint64_t pc = qemu_plugin_insn_vaddr(insn);
    /* Callbacks registered before the inline count: start's own
     * instruction counts, stop's does not. */
    if (pc == start_address) qemu_plugin_register_vcpu_insn_exec_cb(insn, on_start, QEMU_PLUGIN_CB_NO_REGS, NULL);
    if (pc == stop_address) qemu_plugin_register_vcpu_insn_exec_cb(insn, on_stop, QEMU_PLUGIN_CB_NO_REGS, NULL);
    qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &executed, 1);
  }
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                                               int argc, char **argv) {
  int i;
  (void)info;
  for (i = 0; i < argc; ++i) {
    if (strncmp(argv[i], "start=", 6) == 0) start_address = strtoull(argv[i] + 6, NULL, 0) & ~(uint64_t)1;
    if (strncmp(argv[i], "stop=", 5) == 0) stop_address = strtoull(argv[i] + 5, NULL, 0) & ~(uint64_t)1;
  }
  if (start_address == 0 || stop_address == 0) {
    fprintf(stderr, "icount_plugin: expected start=ADDRESS,stop=ADDRESS\n");
    return 1;
  }
  qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
  return 0;
}
