/* The exported model's names, from the build's -DMCUQ_MODEL=name
 * -DMCUQ_MODEL_UPPER=NAME '-DMCUQ_MODEL_HEADER="name.h"': its activation
 * type, invoke function and sizes, for the host harness (run_model.c) and
 * the firmware harnesses (examples/mcu/common/mcu_main.c, stream_main.c). */
#ifndef MCUQ_MCU_MODEL_SYMBOLS_H
#define MCUQ_MCU_MODEL_SYMBOLS_H

#include MCUQ_MODEL_HEADER

#define MCUQ_CAT_(a, b) a##b
#define MCUQ_CAT(a, b) MCUQ_CAT_(a, b)
#define ACTIVATION_T MCUQ_CAT(MCUQ_MODEL, _activation_t)
#define INVOKE MCUQ_CAT(MCUQ_MODEL, _invoke)
#define INPUT_SIZE MCUQ_CAT(MCUQ_MODEL_UPPER, _INPUT_SIZE)
#define OUTPUT_SIZE MCUQ_CAT(MCUQ_MODEL_UPPER, _OUTPUT_SIZE)
#define ARENA_SIZE MCUQ_CAT(MCUQ_MODEL_UPPER, _ARENA_SIZE)

#endif
