# A pip-installed (wheel) torch finds its CUDA libraries (NCCL, cuDNN, ...)
# in site-packages/nvidia/*/lib through $ORIGIN rpaths, which GNU ld does not
# follow when it checks an executable's indirect dependencies: without these
# folders as -rpath-link it takes a system NCCL of another version, or fails.
# Sets MCUQ_TORCH_LINK_OPTIONS (empty for other torch installs) and
# MCUQ_TORCH_LIB_DIR (where libtorch is). Needs find_package(Torch) first.
set(MCUQ_TORCH_LINK_OPTIONS "")
set(MCUQ_TORCH_LIB_DIR "")
if(TORCH_LIBRARY)
  get_filename_component(MCUQ_TORCH_LIB_DIR "${TORCH_LIBRARY}" DIRECTORY)
  file(GLOB _mcuq_wheel_lib_dirs LIST_DIRECTORIES true "${MCUQ_TORCH_LIB_DIR}/../../nvidia/*/lib")
  if(_mcuq_wheel_lib_dirs)
    string(JOIN ":" _mcuq_rpath_link ${_mcuq_wheel_lib_dirs})
    set(MCUQ_TORCH_LINK_OPTIONS "LINKER:-rpath-link,${_mcuq_rpath_link}")
  endif()
endif()
