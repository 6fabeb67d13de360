# `cmake --install`: the libraries, their headers and a relocatable CMake package, so that a
# consumer writes find_package(Triage) and links Triage::moe (the layer, its exchange and
# the communicators) or Triage::train. Paths are relative to the install prefix; LibTorch,
# MPI, yaml-cpp, zlib and nlohmann_json are found again on the consumer's machine.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(TARGETS ${triage_installed_targets} EXPORT TriageTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
foreach(folder common config cuda parallel moe model checkpoint data train)
  install(DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR}/${folder}/
    DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/triage/${folder} FILES_MATCHING PATTERN "*.h")
endforeach()
install(TARGETS triage RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

set(package_dir ${CMAKE_INSTALL_LIBDIR}/cmake/Triage)
install(EXPORT TriageTargets NAMESPACE Triage:: DESTINATION ${package_dir})
configure_package_config_file(${CMAKE_CURRENT_SOURCE_DIR}/TriageConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/TriageConfig.cmake INSTALL_DESTINATION ${package_dir})
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/TriageConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/TriageConfig.cmake
              ${CMAKE_CURRENT_BINARY_DIR}/TriageConfigVersion.cmake
              ${CMAKE_CURRENT_SOURCE_DIR}/torch_without_cuda.cmake
        DESTINATION ${package_dir})
