/* Minimal Cortex-M start-up: vector table, reset handler (copy .data, zero
 * .bss, run main), and a fault handler that exits through semihosting so a
 * crash is a failure, not a hang. Linker symbols come from cortex_m.ld. */
#include <stdint.h>

#include "platform.h"

extern uint32_t __stack_top, __data_load, __data_start, __data_end, __bss_start, __bss_end;
int main(void);

void reset_handler(void) {
  uint32_t *src = &__data_load, *dst = &__data_start;
  while (dst < &__data_end) *dst++ = *src++;
  for (dst = &__bss_start; dst < &__bss_end; ++dst) *dst = 0;
  platform_exit(main());
}

static void fault_handler(void) {
  platform_puts("mcuq: hard fault\n");
  platform_exit(254);
}

__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))(uintptr_t)&__stack_top, reset_handler, fault_handler, fault_handler, fault_handler,
    fault_handler, fault_handler, 0, 0, 0, 0, fault_handler, fault_handler, 0, fault_handler, fault_handler,
};
