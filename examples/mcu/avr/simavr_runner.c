/* Runs AVR firmware on simavr and returns its exit code (stock simavr always
 * exits 0). The firmware (examples/mcu/avr/platform.c) writes console
 * characters to GPIOR0 and its exit code to GPIOR1, then sleeps with
 * interrupts off, which simavr treats as a graceful stop. The host stream
 * (common/stream_main.c): each read of GPIOR2 returns the next byte of
 * INPUT (0 past its end or without one), each write to it appends a byte to
 * OUTPUT (written as it comes, so the host can follow the progress).
 *
 *   simavr_runner FIRMWARE.elf [MCU=atmega328p] [FREQUENCY=16000000] [MAX_CYCLES] [INPUT OUTPUT]
 *
 * Exit status: the firmware's code; 253 if it crashed; 252 if it ran past
 * MAX_CYCLES (default 2e9); 251 on a bad firmware file. */
#include <stdio.h>
#include <stdlib.h>

#include <simavr/sim_avr.h>
#include <simavr/sim_elf.h>
#include <simavr/sim_io.h>

#define GPIOR0_ADDR 0x3E /* data-space addresses on the ATmega328P */
#define GPIOR1_ADDR 0x4A
#define GPIOR2_ADDR 0x4B

static int exit_code = -1;
static FILE *stream_in, *stream_out;

static uint8_t stream_read(avr_t *avr, avr_io_addr_t addr, void *param) {
  int c = stream_in != NULL ? fgetc(stream_in) : EOF;
  (void)avr;
  (void)addr;
  (void)param;
  return c == EOF ? 0 : (uint8_t)c;
}

static void stream_write(avr_t *avr, avr_io_addr_t addr, uint8_t v, void *param) {
  (void)param;
  avr->data[addr] = v;
  if (stream_out != NULL) fputc(v, stream_out);
}

static void console_write(avr_t *avr, avr_io_addr_t addr, uint8_t v, void *param) {
  (void)param;
  avr->data[addr] = v;
  putchar(v);
}

static void exit_write(avr_t *avr, avr_io_addr_t addr, uint8_t v, void *param) {
  (void)param;
  avr->data[addr] = v;
  exit_code = v;
}

int main(int argc, char **argv) {
  static elf_firmware_t firmware; /* zero-initialized */
  const char *mcu = argc > 2 ? argv[2] : "atmega328p";
  const unsigned long frequency = argc > 3 ? strtoul(argv[3], NULL, 10) : 16000000ul;
  const unsigned long long max_cycles = argc > 4 ? strtoull(argv[4], NULL, 10) : 2000000000ull;
  avr_t *avr;
  int state = cpu_Running;
  if (argc < 2) {
    fprintf(stderr, "usage: %s FIRMWARE.elf [MCU] [FREQUENCY] [MAX_CYCLES] [INPUT OUTPUT]\n", argv[0]);
    return 251;
  }
  if (argc > 6) {
    stream_in = fopen(argv[5], "rb");
    stream_out = fopen(argv[6], "wb");
    if (stream_in == NULL || stream_out == NULL) {
      fprintf(stderr, "%s: cannot open the stream files %s, %s\n", argv[0], argv[5], argv[6]);
      return 251;
    }
    setvbuf(stream_out, NULL, _IONBF, 0);
  }
  if (elf_read_firmware(argv[1], &firmware) != 0) {
    fprintf(stderr, "%s: cannot read %s\n", argv[0], argv[1]);
    return 251;
  }
  avr = avr_make_mcu_by_name(mcu);
  if (avr == NULL) {
    fprintf(stderr, "%s: unknown MCU %s\n", argv[0], mcu);
    return 251;
  }
  avr_init(avr);
  avr->log = 0;
  firmware.frequency = (uint32_t)frequency;
  avr_load_firmware(avr, &firmware);
  avr->frequency = (uint32_t)frequency;
  avr_register_io_write(avr, GPIOR0_ADDR, console_write, NULL);
  avr_register_io_write(avr, GPIOR1_ADDR, exit_write, NULL);
  avr_register_io_read(avr, GPIOR2_ADDR, stream_read, NULL);
  avr_register_io_write(avr, GPIOR2_ADDR, stream_write, NULL);
  while (state != cpu_Done && state != cpu_Crashed) {
    state = avr_run(avr);
    if (avr->cycle > max_cycles) {
      fflush(stdout);
      fprintf(stderr, "%s: still running after %llu cycles\n", argv[0], max_cycles);
      return 252;
    }
  }
  fflush(stdout);
  fprintf(stderr, "simavr_runner: %s stopped after %llu cycles\n", mcu, (unsigned long long)avr->cycle);
  if (state == cpu_Crashed || exit_code < 0) return 253;
  return exit_code;
}
