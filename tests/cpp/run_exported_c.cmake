# Compiles C exported by export_example (NAME.c in DIR) with the mcuq runtime
# and the host harness, runs it on DIR/test_inputs.bin and requires the
# output to equal DIR/test_outputs.bin (the C++ integer reference's) byte for
# byte.  cmake -DCC=gcc -DDIR=... -DNAME=... -DSOURCE_DIR=<repo> -P run_exported_c.cmake
file(GLOB runtime_sources ${SOURCE_DIR}/csrc/runtime/*.c)
string(TOUPPER ${NAME} upper)
execute_process(
  COMMAND ${CC} -std=c99 -Wall -Wextra -Werror -pedantic -O2 -DMCUQ_MODEL=${NAME} -DMCUQ_MODEL_UPPER=${upper}
          "-DMCUQ_MODEL_HEADER=\"${NAME}.h\"" -I ${DIR} -I ${SOURCE_DIR}/csrc/runtime ${DIR}/${NAME}.c
          ${runtime_sources} ${SOURCE_DIR}/ops/mcuq/harness/run_model.c -o ${DIR}/run_${NAME}
  RESULT_VARIABLE status)
if(NOT status EQUAL 0)
  message(FATAL_ERROR "compiling the exported C failed")
endif()
execute_process(COMMAND ${DIR}/run_${NAME} ${DIR}/test_inputs.bin ${DIR}/c_outputs.bin 8 RESULT_VARIABLE status)
if(NOT status EQUAL 0)
  message(FATAL_ERROR "running the exported C failed (${status})")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -E compare_files ${DIR}/c_outputs.bin ${DIR}/test_outputs.bin
  RESULT_VARIABLE status)
if(NOT status EQUAL 0)
  message(FATAL_ERROR "the C outputs differ from the C++ integer reference's")
endif()
message(STATUS "exported C == C++ integer reference on 8 inputs")
