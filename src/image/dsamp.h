// dsamp.h — diffusion samplers over Stable Diffusion's noise schedule:
// DDIM (eta 0), Euler, Euler ancestral, DPM++ 2M (optionally on Karras
// sigmas) and LCM, all driven through one guided noise-prediction callback.
//
// Schedule: SD's "scaled linear" betas, β_i = (√β0 + i/(N-1)(√β1 - √β0))²,
// ᾱ_t = Π(1 - β_i), σ_t = √((1 - ᾱ_t)/ᾱ_t). Timesteps are spaced
// "trailing" (999, 749, 499, 249 for 4 steps of 1000) unless the caller
// gives its own; after the last step the sampler goes to ᾱ = 1 (σ = 0).
//
// Every sampler works on the latent as DDIM sees it, x_t = √ᾱ x0 + √(1-ᾱ) ε,
// so one initial latent (unit Gaussian noise, NCHW) serves all of them; the
// k-diffusion samplers convert to x/√ᾱ internally. A timestep between
// schedule entries (Karras sigmas) is passed to the model as a fraction,
// found by interpolating log σ.
//
// Noise for the ancestral samplers comes from a documented generator:
// splitmix64(seed) seeds xoshiro256**, and Box–Muller turns pairs of its
// 53-bit uniforms into Gaussians, in element order. Same seed, same image
// (on any machine; results do not depend on the thread count).
//
//     dsamp_schedule s;
//     dsamp_schedule_sd(&s);
//     int ts[4];
//     dsamp_timesteps(&s, 4, ts);
//     dsamp_params p = {.kind = DSAMP_EULER_A, .seed = 42};
//     dsamp_run(&s, &p, ts, 4, x, n, work, my_model, my_ctx, &err);   // x: noise in, latent out
#ifndef SIM_DSAMP_H
#define SIM_DSAMP_H

#include "base/base.h"

#define DSAMP_TRAIN_STEPS 1000

typedef enum dsamp_kind { DSAMP_DDIM, DSAMP_EULER, DSAMP_EULER_A, DSAMP_DPMPP_2M, DSAMP_LCM, DSAMP_COUNT } dsamp_kind;

typedef struct dsamp_schedule {
    double acp[DSAMP_TRAIN_STEPS];   // ᾱ_t
    double sigma[DSAMP_TRAIN_STEPS]; // σ_t
} dsamp_schedule;

// Called after step i (0-based) of `steps` with the sampler's latent x (n)
// and the step's denoised estimate x0 (n, DDIM scale). x·xscale is the
// latent in DDIM scale at the next noise level ᾱ = acp_next (1 after the
// last step, where xscale is 1 too): xscale is 1 for DDIM and LCM and √ᾱ
// for the k-diffusion samplers, which hold x/√ᾱ. The hook may change x in
// place (in that scale), e.g. to blend in a noised init latent for
// inpainting; a status other than SIM_OK stops the run and comes back.
typedef sim_status (*dsamp_step_fn)(void *ctx, int i, int steps, float *x, double xscale, const float *x0, double acp_next,
                                    sim_err *err);

typedef struct dsamp_params {
    dsamp_kind kind;
    bool karras;      // DPM++ 2M / Euler: Karras sigmas (ρ = 7) instead of the timesteps' own
    uint64_t seed;    // ancestral noise (Euler a, LCM)
    // The first step to run: 0 runs the whole schedule; img2img starts
    // later, from a latent noised to dsamp_start_acp. The hook counts the
    // steps run (i from 0, steps - first of them).
    int first;
    dsamp_step_fn on_step; // optional
    void *step_ctx;
} dsamp_params;

// eps (n) = the guided noise prediction for latent x (n, as the model takes
// it: x_t in DDIM scale) at timestep t (fractional for Karras sigmas).
typedef sim_status (*dsamp_model_fn)(void *ctx, const float *x, float t, float *eps, sim_err *err);

// SD 1.x/2.x: scaled linear from 0.00085 to 0.012.
void dsamp_schedule_sd(dsamp_schedule *s);
void dsamp_schedule_scaled_linear(dsamp_schedule *s, double beta_start, double beta_end);

// ts[0..steps) = trailing spacing, descending. steps in 1..1000.
void dsamp_timesteps(const dsamp_schedule *s, int steps, int *ts);

const char *dsamp_name(dsamp_kind k);
// "ddim", "euler", "euler_a", "dpmpp_2m", "lcm"; returns -1 for an unknown name.
int dsamp_parse(const char *name);

// Floats of work memory dsamp_run needs for a latent of n floats.
size_t dsamp_work_floats(size_t n);

// Runs the sampler from x (DDIM scale, noised to ts[p->first]; ts[0] is pure
// noise) to the final latent, in place. ts: `steps` descending timesteps in
// [0, 999]; p->first in [0, steps). On a model or hook
// error the status comes back unchanged and x holds the partial result.
sim_status dsamp_run(const dsamp_schedule *s, const dsamp_params *p, const int *ts, int steps, float *x, size_t n,
                     float *work, dsamp_model_fn model, void *ctx, sim_err *err);

// ᾱ of the noise level the run starts at (step p->first of the schedule
// ts[0..steps), or of the Karras sigmas): x = √ᾱ x0 + √(1-ᾱ) ε there.
double dsamp_start_acp(const dsamp_schedule *s, const dsamp_params *p, const int *ts, int steps);

// The documented generator: fills out[0..n) with standard Gaussians.
void dsamp_gauss(uint64_t seed, float *out, size_t n);

#endif
