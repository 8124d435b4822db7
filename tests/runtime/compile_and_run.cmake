# Builds the mcuq runtime and its two host tests with one compiler and flag
# set, outside the CMake build, and runs them, with a replay of the kernel
# fuzzers (tests/fuzz, 2000 pseudo-random inputs per kernel family) where
# the kernels check their arguments; then compiles each kernel file with
# MCUQ_NO_FLOAT. Driven by ctest (see CMakeLists.txt):
#
#   cmake -DCOMPILER=clang "-DFLAGS=-fsanitize=address,undefined" \
#         -DSOURCE_DIR=<repo> -DWORK_DIR=<scratch dir> -P compile_and_run.cmake
#
# Prints "MCUQ_SKIP: ..." (a skip for ctest) where the compiler cannot build
# and run a trivial program with FLAGS (e.g. no sanitizer runtime installed).
foreach(var COMPILER SOURCE_DIR WORK_DIR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "compile_and_run.cmake: -D${var}=... is required")
  endif()
endforeach()

separate_arguments(flags UNIX_COMMAND "${FLAGS}")
set(runtime_dir ${SOURCE_DIR}/csrc/runtime)
set(test_dir ${SOURCE_DIR}/tests/runtime)
file(GLOB runtime_sources ${runtime_dir}/*.c)
set(cflags -std=c99 -Wall -Wextra -Werror -pedantic -I${runtime_dir} ${flags})
file(MAKE_DIRECTORY ${WORK_DIR})

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    string(REPLACE ";" " " command "${ARGN}")
    message(FATAL_ERROR "failed (${rc}): ${command}")
  endif()
endfunction()

# Can this compiler build and run anything with these flags?
file(WRITE ${WORK_DIR}/probe.c "int main(void) { return 0; }\n")
execute_process(COMMAND ${COMPILER} ${flags} ${WORK_DIR}/probe.c -o ${WORK_DIR}/probe
                RESULT_VARIABLE probe_build OUTPUT_QUIET ERROR_QUIET)
if(probe_build EQUAL 0)
  execute_process(COMMAND ${WORK_DIR}/probe RESULT_VARIABLE probe_run OUTPUT_QUIET ERROR_QUIET)
endif()
if(NOT probe_build EQUAL 0 OR NOT probe_run EQUAL 0)
  message("MCUQ_SKIP: ${COMPILER} cannot build and run programs with: ${FLAGS}")
  return()
endif()

set(runtime_objects)
foreach(source ${runtime_sources})
  get_filename_component(name ${source} NAME_WE)
  run(${COMPILER} ${cflags} -c ${source} -o ${WORK_DIR}/${name}.o)
  list(APPEND runtime_objects ${WORK_DIR}/${name}.o)
endforeach()
run(${COMPILER} ${cflags} ${test_dir}/test_kernels.c ${runtime_objects} -o ${WORK_DIR}/test_kernels)
run(${COMPILER} ${cflags} ${test_dir}/test_arith.c ${runtime_objects} -o ${WORK_DIR}/test_arith -lm)
run(${WORK_DIR}/test_kernels)
run(${WORK_DIR}/test_arith ${test_dir}/requantize_vectors.txt)

# The fuzzers expect refusals of out-of-contract calls, which MCUQ_NO_CHECKS removes.
if(NOT FLAGS MATCHES "MCUQ_NO_CHECKS")
  set(family 0)
  foreach(name conv2d fully_connected pool2d add requantize lut mul shape softmax)
    run(${COMPILER} ${cflags} -I${test_dir} -DMCUQ_FUZZ_STANDALONE -DMCUQ_FUZZ_FAMILY=${family}
        ${SOURCE_DIR}/tests/fuzz/fuzz_kernels.c ${runtime_objects} -o ${WORK_DIR}/fuzz_${name})
    run(${WORK_DIR}/fuzz_${name} 2000)
    math(EXPR family "${family} + 1")
  endforeach()
endif()

# The MCU build: no floating point anywhere in the kernels.
foreach(source ${runtime_sources})
  get_filename_component(name ${source} NAME_WE)
  run(${COMPILER} ${cflags} -DMCUQ_NO_FLOAT -c ${source} -o ${WORK_DIR}/${name}.nofloat.o)
endforeach()
