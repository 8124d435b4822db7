# Installs mcuq into a scratch prefix, then configures, builds and runs the
# consumer project of examples/cpp/consumer against it (cmake -P script).
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  set(last_output "${out}" PARENT_SCOPE)
endfunction()

file(REMOVE_RECURSE ${WORK_DIR})
run(${CMAKE_COMMAND} --install ${MCUQ_BUILD_DIR} --prefix ${WORK_DIR}/prefix)
run(${CMAKE_COMMAND} -S ${CONSUMER_SOURCE_DIR} -B ${WORK_DIR}/build -G ${GENERATOR}
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix -DTorch_DIR=${TORCH_DIR})
run(${CMAKE_COMMAND} --build ${WORK_DIR}/build)
foreach(program mcuq_consumer mcuq_consumer_by_name)
  run(${WORK_DIR}/build/${program})
  message(STATUS "${last_output}")
  if(NOT last_output MATCHES "ok")
    message(FATAL_ERROR "unexpected output of ${program}:\n${last_output}")
  endif()
endforeach()
