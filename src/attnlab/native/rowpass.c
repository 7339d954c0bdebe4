/* Softmax of one block of attention logits and the row and column sums the head statistics
 * need, in one sweep per row (three short passes over a row that stays in the core's cache)
 * instead of torch's softmax followed by four more passes over the whole block.
 *
 * S: [n_bh, q, kk] fp32, contiguous: logits, masked (finite: masked entries hold finfo.min) or, for a
 * causal block, masked here (`own`).
 * P: same shape, written: P[i, :] = softmax(S[i, :]); masked keys get exactly 0.
 * For row i of block-head bh:
 *   lse[i]    = ln sum_j exp(S[i, j])
 *   dot[i]    = sum_j P[i, j] S[i, j]              (entropy = lse - dot)
 *   kmean[i]  = sum_j P[i, j] j                    (j counted from the block's first key)
 *   col[t, bh, j] += P[i, j]                       (per-thread partial column sums, fp64:
 *                                                   a sink's sum over 8k rows keeps 1e-4)
 * Rows are split into one contiguous range per thread; col has n_threads slices that the
 * caller adds up. exp is a polynomial gcc vectorizes (about 1 ulp on the range softmax
 * uses, x <= 0; below -87.3, where fp32 exp is denormal or 0, it returns 0).
 */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

static inline float exp_nonpos(float x) {
    const float lo = -87.33f;
    float xc = x < lo ? lo : x;
    float n = rintf(xc * 1.44269504088896341f);          /* x = n ln2 + r, |r| <= ln2 / 2 */
    float r = xc - n * 0.693145751953125f;               /* ln2 in two parts (Cody-Waite) */
    r = r - n * 1.428606765330187e-06f;
    float p = 1.0f / 5040.0f;                            /* Taylor to r^7: error < 1e-8 relative */
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;             /* 2^n, n >= -126 */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return x < lo ? 0.0f : p * scale;
}

static void one_row(float *restrict s, float *restrict p, long kk, long vis, double *restrict col,
                    float *lse, float *dot, float *kmean) {
    /* keys [vis, kk) are in the row's future: masked here, as torch's masked_fill would */
    const float low = -3.40282346638528859812e+38f;
    for (long j = vis; j < kk; j++) {
        s[j] = low;
        p[j] = 0.0f;
    }
    float m = s[0];
    for (long j = 1; j < vis; j++)
        m = s[j] > m ? s[j] : m;
    double z = 0.0;  /* the normaliser in fp64: float sums of hundreds of terms bias every P of a row alike */
    for (long j = 0; j < vis; j++) {
        float e = exp_nonpos(s[j] - m);
        p[j] = e;
        z += e;
    }
    float inv = (float)(1.0 / z);
    float d = 0.0f, km = 0.0f;
    for (long j = 0; j < vis; j++) {
        float v = p[j] * inv;
        p[j] = v;
        d += v * s[j];
        km += v * (float)j;
        col[j] += v;
    }
    *lse = m + (float)log(z);
    *dot = d;
    *kmean = km;
}

/* own: the key (from the block's first) of the block's first query's own position, for a
 * causal block whose future keys are not masked yet (row i sees keys < own + i + 1); own >= kk:
 * S is masked already. */
void softmax_rows(float *S, float *P, long n_bh, long q, long kk, long own, float *lse, float *dot, float *kmean,
                  double *col, int n_threads) {
    long rows = n_bh * q;
    memset(col, 0, sizeof(double) * (size_t)n_threads * n_bh * kk);
#pragma omp parallel num_threads(n_threads)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        long r0 = rows * t / nt, r1 = rows * (t + 1) / nt;
        double *mine = col + (size_t)t * n_bh * kk;
        for (long r = r0; r < r1; r++) {
            long vis = own + r % q + 1;
            vis = vis > kk ? kk : (vis < 1 ? 1 : vis);
            one_row(S + (size_t)r * kk, P + (size_t)r * kk, kk, vis, mine + (size_t)(r / q) * kk, lse + r, dot + r,
                    kmean + r);
        }
    }
}
