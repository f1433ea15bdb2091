// dsamp.c — noise schedule, timesteps, the documented generator and the samplers (see dsamp.h).
#include "image/dsamp.h"

#include <math.h>
#include <string.h>

// --- schedule ----------------------------------------------------------------------------------

void dsamp_schedule_scaled_linear(dsamp_schedule *s, double beta_start, double beta_end) {
    double prod = 1, a = sqrt(beta_start), b = sqrt(beta_end);
    for (int i = 0; i < DSAMP_TRAIN_STEPS; i++) {
        double beta = a + (b - a) * i / (DSAMP_TRAIN_STEPS - 1);
        prod *= 1.0 - beta * beta;
        s->acp[i] = prod;
        s->sigma[i] = sqrt((1.0 - prod) / prod);
    }
}

void dsamp_schedule_sd(dsamp_schedule *s) { dsamp_schedule_scaled_linear(s, 0.00085, 0.012); }

void dsamp_timesteps(const dsamp_schedule *s, int steps, int *ts) {
    (void)s;
    ASSERT(steps >= 1 && steps <= DSAMP_TRAIN_STEPS);
    // diffusers' "trailing": round(arange(N, 0, -N/steps)) - 1
    double ratio = (double)DSAMP_TRAIN_STEPS / steps;
    for (int i = 0; i < steps; i++) ts[i] = (int)round(DSAMP_TRAIN_STEPS - i * ratio) - 1;
}

static const char *const NAMES[DSAMP_COUNT] = {"ddim", "euler", "euler_a", "dpmpp_2m", "lcm"};

const char *dsamp_name(dsamp_kind k) { return (unsigned)k < DSAMP_COUNT ? NAMES[k] : "?"; }

int dsamp_parse(const char *name) {
    for (int i = 0; i < DSAMP_COUNT; i++)
        if (strcmp(name, NAMES[i]) == 0) return i;
    return -1;
}

// --- the generator -----------------------------------------------------------------------------

typedef struct rng {
    uint64_t s[4];
    bool have;  // a second Box–Muller value is waiting
    double next;
} rng;

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void rng_seed(rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
    r->have = false;
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t xoshiro(rng *r) { // xoshiro256**
    uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0], s[3] ^= s[1], s[1] ^= s[2], s[0] ^= s[3], s[2] ^= t, s[3] = rotl(s[3], 45);
    return out;
}

static double gauss(rng *r) {
    if (r->have) {
        r->have = false;
        return r->next;
    }
    // u1 in (0, 1], u2 in [0, 1): 53-bit uniforms.
    double u1 = ((xoshiro(r) >> 11) + 1) * 0x1.0p-53, u2 = (xoshiro(r) >> 11) * 0x1.0p-53;
    double m = sqrt(-2.0 * log(u1));
    r->next = m * sin(2 * M_PI * u2);
    r->have = true;
    return m * cos(2 * M_PI * u2);
}

void dsamp_gauss(uint64_t seed, float *out, size_t n) {
    rng r;
    rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) out[i] = (float)gauss(&r);
}

// --- samplers -------------------------------------------------------------------------------------

size_t dsamp_work_floats(size_t n) { return 3 * n; }

// The (fractional) timestep whose σ is sigma, by log-σ interpolation.
static double sigma_to_t(const dsamp_schedule *s, double sigma) {
    double ls = log(sigma);
    if (ls <= log(s->sigma[0])) return 0;
    if (ls >= log(s->sigma[DSAMP_TRAIN_STEPS - 1])) return DSAMP_TRAIN_STEPS - 1;
    int lo = 0, hi = DSAMP_TRAIN_STEPS - 1;
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (log(s->sigma[mid]) <= ls) lo = mid;
        else hi = mid;
    }
    double a = log(s->sigma[lo]), b = log(s->sigma[hi]);
    return lo + (ls - a) / (b - a);
}

static sim_status run_ddim_lcm(const dsamp_schedule *s, const dsamp_params *p, const int *ts, int steps, float *x, size_t n,
                               float *work, dsamp_model_fn model, void *ctx, sim_err *err) {
    float *eps = work, *noise = work + n; // after a step eps holds x0
    rng r;
    rng_seed(&r, p->seed + 1);
    for (int i = p->first; i < steps; i++) {
        sim_status st = model(ctx, x, (float)ts[i], eps, err);
        if (st != SIM_OK) return st;
        double a = s->acp[ts[i]], ap = i + 1 < steps ? s->acp[ts[i + 1]] : 1.0;
        double sa = sqrt(a), s1a = sqrt(1 - a), sap = sqrt(ap), s1ap = sqrt(1 - ap);
        if (p->kind == DSAMP_DDIM) {
            for (size_t j = 0; j < n; j++) {
                double x0 = (x[j] - s1a * eps[j]) / sa;
                x[j] = (float)(sap * x0 + s1ap * eps[j]);
                eps[j] = (float)x0;
            }
        } else {
            // LCM: consistency boundary conditions (σ_data 0.5, timestep scaling 10), fresh noise between steps.
            double tsc = ts[i] * 10.0, c_skip = 0.25 / (tsc * tsc + 0.25), c_out = tsc / sqrt(tsc * tsc + 0.25);
            bool last = i + 1 == steps;
            for (size_t j = 0; j < n; j++) noise[j] = last ? 0.0f : (float)gauss(&r);
            for (size_t j = 0; j < n; j++) {
                double x0 = (x[j] - s1a * eps[j]) / sa, den = c_out * x0 + c_skip * x[j];
                x[j] = (float)(last ? den : sap * den + s1ap * noise[j]);
                eps[j] = (float)den;
            }
        }
        if (p->on_step && (st = p->on_step(p->step_ctx, i - p->first, steps - p->first, x, 1.0, eps, ap, err)) != SIM_OK) return st;
    }
    return SIM_OK;
}

// σ of step i: the timestep's own, or Karras' (ρ = 7 between the schedule's ends).
static double step_sigma(const dsamp_schedule *s, const dsamp_params *p, const int *ts, int steps, int i) {
    if (i >= steps) return 0;
    if (!p->karras) return s->sigma[ts[i]];
    double rho = 7.0, mn = pow(s->sigma[0], 1 / rho), mx = pow(s->sigma[DSAMP_TRAIN_STEPS - 1], 1 / rho);
    return pow(mx + (steps > 1 ? (double)i / (steps - 1) : 0) * (mn - mx), rho);
}

static bool uses_sigmas(dsamp_kind k) { return k == DSAMP_EULER || k == DSAMP_EULER_A || k == DSAMP_DPMPP_2M; }

double dsamp_start_acp(const dsamp_schedule *s, const dsamp_params *p, const int *ts, int steps) {
    if (!uses_sigmas(p->kind)) return s->acp[ts[p->first]];
    double sg = step_sigma(s, p, ts, steps, p->first);
    return 1 / (1 + sg * sg);
}

// Euler, Euler ancestral, DPM++ 2M: on x̃ = x·√(1+σ²) with σ falling to 0.
static sim_status run_k(const dsamp_schedule *s, const dsamp_params *p, const int *ts, int steps, float *x, size_t n, float *work,
                        dsamp_model_fn model, void *ctx, sim_err *err) {
    float *eps = work, *old = work + n, *xin = work + 2 * n; // after a step xin holds x0
    double sig[DSAMP_TRAIN_STEPS + 1];
    for (int i = 0; i <= steps; i++) sig[i] = step_sigma(s, p, ts, steps, i);
    rng r;
    rng_seed(&r, p->seed + 1);
    double scale0 = sqrt(1 + sig[p->first] * sig[p->first]);
    for (size_t j = 0; j < n; j++) x[j] = (float)(x[j] * scale0);
    for (int i = p->first; i < steps; i++) {
        double sg = sig[i], sn = sig[i + 1], in = 1.0 / sqrt(1 + sg * sg);
        for (size_t j = 0; j < n; j++) xin[j] = (float)(x[j] * in);
        double t = p->karras ? sigma_to_t(s, sg) : ts[i];
        sim_status st = model(ctx, xin, (float)t, eps, err);
        if (st != SIM_OK) return st;
        if (p->kind == DSAMP_EULER) {
            for (size_t j = 0; j < n; j++) {
                xin[j] = (float)(x[j] - sg * eps[j]);
                x[j] = (float)(x[j] + (sn - sg) * eps[j]);
            }
        } else if (p->kind == DSAMP_EULER_A) {
            double up = sn > 0 ? sqrt(sn * sn * (sg * sg - sn * sn) / (sg * sg)) : 0, down;
            up = MIN(up, sn);
            down = sqrt(sn * sn - up * up);
            for (size_t j = 0; j < n; j++) {
                double x0 = x[j] - sg * eps[j];
                x[j] = (float)(x0 + down * eps[j] + (up > 0 ? up * gauss(&r) : 0));
                xin[j] = (float)x0;
            }
        } else { // DPM++ 2M
            double tt = -log(sg), tn = sn > 0 ? -log(sn) : INFINITY, h = tn - tt;
            double ratio = sn / sg, em = -expm1(-h); // 1 - σn/σ
            bool first_order = i == p->first || sn == 0;
            double rr = first_order ? 0 : (tt + log(sig[i - 1])) / h; // h_last / h
            for (size_t j = 0; j < n; j++) {
                double den = x[j] - sg * eps[j], d = den;
                if (!first_order) d = (1 + 1 / (2 * rr)) * den - (1 / (2 * rr)) * old[j];
                x[j] = (float)(ratio * x[j] + em * d);
                old[j] = xin[j] = (float)den;
            }
        }
        double acp = 1 / (1 + sn * sn);
        if (p->on_step && (st = p->on_step(p->step_ctx, i - p->first, steps - p->first, x, sqrt(acp), xin, acp, err)) != SIM_OK)
            return st;
    }
    return SIM_OK;
}

sim_status dsamp_run(const dsamp_schedule *s, const dsamp_params *p, const int *ts, int steps, float *x, size_t n, float *work,
                     dsamp_model_fn model, void *ctx, sim_err *err) {
    if (steps < 1 || steps > DSAMP_TRAIN_STEPS) return err_set(err, SIM_ERR_ARG, "%d steps (1 to %d)", steps, DSAMP_TRAIN_STEPS);
    if (p->first < 0 || p->first >= steps) return err_set(err, SIM_ERR_ARG, "first step %d of %d", p->first, steps);
    for (int i = 0; i < steps; i++)
        if (ts[i] < 0 || ts[i] >= DSAMP_TRAIN_STEPS || (i && ts[i] >= ts[i - 1]))
            return err_set(err, SIM_ERR_ARG, "timestep %d at %d: timesteps must descend within 0..%d", ts[i], i, DSAMP_TRAIN_STEPS - 1);
    if ((unsigned)p->kind >= DSAMP_COUNT) return err_set(err, SIM_ERR_ARG, "unknown sampler %d", (int)p->kind);
    return uses_sigmas(p->kind) ? run_k(s, p, ts, steps, x, n, work, model, ctx, err) : run_ddim_lcm(s, p, ts, steps, x, n, work, model, ctx, err);
}
