#pragma once
// Process-wide settings that libraries read once, when they are loaded, and
// that decide whether torch runs at full speed on this machine. A program that
// wants them calls tune_runtime_environment(argv) first thing in main(); when
// something must change it re-executes itself once with the settings in its
// environment. Anything the user set explicitly always wins.
//
// 1. OMP_WAIT_POLICY=PASSIVE. libgomp (used by libtorch and OpenBLAS) lets idle
//    worker threads spin by default. On a machine busy with anything else —
//    other processes, or our own data-loading thread — the spinning threads take
//    the cores the descheduled ones need: measured here with other jobs running,
//    a ViT-B encoder took 73 s instead of 24 s and a click 1155 ms instead of
//    148 ms. Passive waiting costs a few microseconds per region when idle.
// 2. OPENBLAS_CORETYPE. OpenBLAS picks its kernels from the CPU model; virtual
//    machines that report a generic model ("Intel Xeon Processor") make it fall
//    back to SSE3 "Prescott" kernels on CPUs with AVX2/AVX-512: measured here,
//    a 4096x768x3072 matmul ran at 38 GFLOP/s instead of 174 on 2 threads. When
//    the loaded OpenBLAS reports such a legacy core and the CPU (and OS) support
//    AVX-512 or AVX2+FMA, the matching kernels (SkylakeX / Haswell) are chosen.
namespace medicosam {

// Returns normally when nothing needs to change (or when re-executing fails,
// in which case the program carries on as is).
void tune_runtime_environment(char** argv);

// The OpenBLAS kernel family in use ("SkylakeX", "Haswell", "Prescott", ...),
// or "" when the BLAS torch uses is not OpenBLAS.
const char* openblas_core_name();

}  // namespace medicosam
