# CMake toolchain file for bare-metal Arm Cortex-M with the GNU Arm toolchain.
#   cmake -DCMAKE_TOOLCHAIN_FILE=arm-none-eabi.cmake -DMICROMIX_CPU=cortex-m7 ...
set(CMAKE_SYSTEM_NAME Generic)
set(CMAKE_SYSTEM_PROCESSOR arm)
set(CMAKE_C_COMPILER arm-none-eabi-gcc)
set(CMAKE_ASM_COMPILER arm-none-eabi-gcc)
set(CMAKE_AR arm-none-eabi-ar)
# A static library needs no link step while CMake probes the compiler.
set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)
set(MICROMIX_CPU "cortex-m4" CACHE STRING "the -mcpu of the target core")
set(CMAKE_C_FLAGS_INIT "-mcpu=${MICROMIX_CPU} -mthumb -ffunction-sections -fdata-sections")
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
