#pragma once
// libgomp (which libtorch and OpenBLAS use here) lets idle worker threads spin
// by default. On a machine that is busy with anything else — other processes,
// or our own data-loading thread — the spinning threads take the cores the
// descheduled ones need, and every parallel region waits for them: measured
// here with other jobs running, a ViT-B encoder took 73 s instead of 24 s and a
// click 1155 ms instead of 148 ms. Passive waiting costs a few microseconds per
// region on an idle machine. The policy is read when libgomp is loaded, so a
// program that wants it re-executes itself once with OMP_WAIT_POLICY=PASSIVE
// (an explicit OMP_WAIT_POLICY from the user always wins).
namespace medicosam {

// Call first thing in main(). Returns normally when nothing needs to change
// (or when re-executing fails, in which case the program carries on as is).
void prefer_passive_openmp_waits(char** argv);

}  // namespace medicosam
