#!/usr/bin/env bash
# tests/gpu/fetch_deps.sh: run here (Debian 12, network to the Debian mirror) before a GPU
# check. The lent GPU machine has CUDA, PyTorch/LibTorch, CMake and ninja but no Open MPI,
# yaml-cpp, GoogleTest, CLI11 or nlohmann-json, and no network: this downloads those
# packages with their library dependencies (not the base system: libc, libstdc++, ...) and
# unpacks them into tests/gpu/deps/root, which the device run carries (git ignores it).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
deps=$here/deps
# The build needs the -dev packages (headers, CMake files, link symlinks); the programs
# need Open MPI's own libraries and what they load (found with ldd on libmpi, orted and
# every MCA component, then dpkg -S). Base-system libraries (libc, libstdc++, libudev,
# libuuid, libatomic) are the GPU machine's own.
packages=(libopenmpi-dev libopenmpi3 openmpi-bin openmpi-common
  libyaml-cpp-dev libyaml-cpp0.7 libgtest-dev googletest libcli11-dev nlohmann-json3-dev zlib1g-dev zlib1g
  libhwloc15 libevent-core-2.1-7 libevent-pthreads-2.1-7 libevent-2.1-7 libpmix2 libfabric1
  libibverbs1 ibverbs-providers librdmacm1 libnl-3-200 libnl-route-3-200 libnuma1 libmunge2
  libpsm-infinipath1 libpsm2-2 libucx0 libhwloc-dev libevent-dev libnuma-dev libpmix-dev)
rm -rf "$deps" && mkdir -p "$deps/debs" "$deps/root" && chmod 755 "$deps/debs"
(cd "$deps/debs" && apt-get download -qq "${packages[@]}" 2>/dev/null)
for deb in "$deps"/debs/*.deb; do dpkg-deb -x "$deb" "$deps/root"; done
rm -rf "$deps/debs" "$deps/root/usr/share/doc" "$deps/root/usr/share/man"
# Absolute symlinks (libz.so -> /lib/...) would point outside the carried tree: make them
# relative to where their targets were unpacked.
while read -r link; do
  target=$(readlink "$link")
  [[ $target == /* && -e $deps/root$target ]] && ln -sfr "$deps/root$target" "$link"
done < <(find "$deps/root" -type l)
# Static archives are not linked (shared libraries are), except GoogleTest's.
find "$deps/root" -name '*.a' ! -name 'libgtest*' ! -name 'libgmock*' -delete
echo "$(find "$deps/root" -type f | wc -l) files, $(du -sh "$deps/root" | cut -f1) in $deps/root (${#packages[@]} packages)"
