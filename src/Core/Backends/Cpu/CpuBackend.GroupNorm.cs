using BnDist.Core.Tensors;

namespace BnDist.Core.Backends.Cpu;

/// <summary>
/// Group norm (Wu &amp; He 2018): statistics per sample over groups of C/G channels, so no
/// cross-sample (and no cross-worker) reduction. In NCHW the values of one (sample, group)
/// are contiguous: (C/G)·S of them.
/// </summary>
public sealed partial class CpuBackend
{
    public void GroupNormForward(in ChannelLayout layout, int groups, float eps, Tensor x, Tensor gamma, Tensor beta,
        Tensor xhat, Tensor invStd, Tensor y)
    {
        OpChecks.Layout(layout, x);
        float[] src = D(x), xh = D(xhat), dst = D(y), ga = D(gamma), be = D(beta), inv = D(invStd);
        ForChunks(layout.N * groups, (layout, groups, eps, (src, xh, dst, ga, be, inv)),
            static (in (ChannelLayout L, int Groups, float Eps, (float[] X, float[] Xhat, float[] Y, float[] Gamma, float[] Beta, float[] Inv) T) a, int r0, int r1) =>
        {
            int groups = a.Groups, s = a.L.Spatial, perGroup = a.L.Channels / groups;
            float eps = a.Eps;
            var (src, xh, dst, ga, be, inv) = a.T;
            for (int r = r0; r < r1; r++)
            {
                var values = src.AsSpan(r * perGroup * s, perGroup * s);
                // Two passes in float64: the mean, then the centered squares.
                double sum = 0;
                foreach (float v in values) sum += v;
                double mean = sum / values.Length, m2 = 0;
                foreach (float v in values) m2 += (v - mean) * (v - mean);
                float istd = (float)(1.0 / Math.Sqrt(m2 / values.Length + eps));
                inv[r] = istd;
                float fmean = (float)mean;
                int firstChannel = (r % groups) * perGroup;
                for (int j = 0; j < perGroup; j++)
                {
                    int at = (r * perGroup + j) * s, ch = firstChannel + j;
                    for (int i = at; i < at + s; i++)
                    {
                        float h = (src[i] - fmean) * istd;
                        xh[i] = h;
                        dst[i] = ga[ch] * h + be[ch];
                    }
                }
            }
        }, minChunk: 1);
    }

    public void GroupNormBackward(in ChannelLayout layout, int groups, Tensor dy, Tensor xhat, Tensor gamma, Tensor invStd,
        Tensor dx, Tensor dgamma, Tensor dbeta)
    {
        OpChecks.Layout(layout, dy);
        int n = layout.N, c = layout.Channels;
        float[] g = D(dy), xh = D(xhat), ga = D(gamma), inv = D(invStd), d = D(dx), dga = D(dgamma), dbe = D(dbeta);
        // dγ, dβ: one task per channel, samples in order.
        ForChunks(c, (layout, g, xh, dga, dbe), static (in (ChannelLayout L, float[] Dy, float[] Xhat, float[] DGamma, float[] DBeta) a, int c0, int c1) =>
        {
            int n = a.L.N, c = a.L.Channels, s = a.L.Spatial;
            var (g, xh, dga, dbe) = (a.Dy, a.Xhat, a.DGamma, a.DBeta);
            for (int ch = c0; ch < c1; ch++)
            {
                double sg = 0, sgx = 0;
                for (int i = 0; i < n; i++)
                {
                    int at = (i * c + ch) * s;
                    for (int j = at; j < at + s; j++)
                    {
                        sg += g[j];
                        sgx += (double)g[j] * xh[j];
                    }
                }
                dbe[ch] = (float)sg;
                dga[ch] = (float)sgx;
            }
        }, minChunk: 1);
        // dx = invStd·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)), ĝ = γ_c·g, means over the group.
        ForChunks(n * groups, (layout, groups, (g, xh, ga, inv, d)),
            static (in (ChannelLayout L, int Groups, (float[] Dy, float[] Xhat, float[] Gamma, float[] Inv, float[] Dx) T) a, int r0, int r1) =>
        {
            int groups = a.Groups, s = a.L.Spatial, perGroup = a.L.Channels / groups;
            var (g, xh, ga, inv, d) = a.T;
            for (int r = r0; r < r1; r++)
            {
                int first = r * perGroup * s, firstChannel = (r % groups) * perGroup, count = perGroup * s;
                double m1 = 0, m2 = 0;
                for (int j = 0; j < perGroup; j++)
                {
                    float gc = ga[firstChannel + j];
                    for (int i = first + j * s; i < first + (j + 1) * s; i++)
                    {
                        double gh = gc * g[i];
                        m1 += gh;
                        m2 += gh * xh[i];
                    }
                }
                float mean1 = (float)(m1 / count), mean2 = (float)(m2 / count), istd = inv[r];
                for (int j = 0; j < perGroup; j++)
                {
                    float gc = ga[firstChannel + j];
                    for (int i = first + j * s; i < first + (j + 1) * s; i++)
                        d[i] = istd * (gc * g[i] - mean1 - xh[i] * mean2);
                }
            }
        }, minChunk: 1);
    }
}
