# The C++ route to a microcontroller, without Python: firmware built from what
# export_example wrote (NAME.c, vectors.h in DIR) + the mcuq runtime + the
# firmware harness (examples/mcu), run on an emulated Cortex-M4 (QEMU
# mps2-an386). The firmware compares every output level with the C++ integer
# reference's and exits with the number of mismatching inputs.
#   cmake -DDIR=... -DNAME=... -DSOURCE_DIR=<repo> -P run_on_mcu.cmake
find_program(ARM_GCC arm-none-eabi-gcc)
find_program(QEMU qemu-system-arm)
if(NOT ARM_GCC OR NOT QEMU)
  message(FATAL_ERROR "arm-none-eabi-gcc and qemu-system-arm are required (scripts/setup.sh installs them)")
endif()
file(GLOB runtime_sources ${SOURCE_DIR}/csrc/runtime/*.c)
set(mcu ${SOURCE_DIR}/examples/mcu)
string(TOUPPER ${NAME} upper)
execute_process(
  COMMAND ${ARM_GCC} -mcpu=cortex-m4 -mthumb -mfloat-abi=soft -std=c99 -Wall -Wextra -Werror -pedantic -Os
          -ffunction-sections -fdata-sections -DMCUQ_NO_FLOAT -DMCUQ_MODEL=${NAME} -DMCUQ_MODEL_UPPER=${upper}
          "-DMCUQ_MODEL_HEADER=\"${NAME}.h\"" -I ${DIR} -I ${SOURCE_DIR}/csrc/runtime -I ${mcu}/common
          -I ${SOURCE_DIR}/ops/mcuq/harness
          ${DIR}/${NAME}.c ${runtime_sources} ${mcu}/common/mcu_main.c ${mcu}/cortex_m/startup.c
          ${mcu}/cortex_m/semihost.c ${mcu}/common/semihosting.c -nostartfiles --specs=nano.specs --specs=nosys.specs -T ${mcu}/cortex_m/cortex_m.ld
          -Wl,--gc-sections,--defsym=FLASH_SIZE=4194304,--defsym=RAM_SIZE=4194304 -o ${DIR}/${NAME}-cortex-m4.elf
  RESULT_VARIABLE status)
if(NOT status EQUAL 0)
  message(FATAL_ERROR "building the Cortex-M4 firmware failed")
endif()
execute_process(
  COMMAND ${QEMU} -M mps2-an386 -nographic -monitor none -serial none -chardev stdio,id=c0
          -semihosting-config enable=on,target=native,chardev=c0 -kernel ${DIR}/${NAME}-cortex-m4.elf
  RESULT_VARIABLE status OUTPUT_VARIABLE output TIMEOUT 300)
message(STATUS "${output}")
if(NOT status EQUAL 0)
  message(FATAL_ERROR "the firmware reported ${status} mismatching inputs (or failed)")
endif()
