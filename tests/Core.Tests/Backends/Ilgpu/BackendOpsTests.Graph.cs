using BnDist.Core.Backends;
using BnDist.Core.Tests.Support;

namespace BnDist.Core.Tests.Backends.Ilgpu;

/// <summary>The graph ops of issue 12 (sums, products, channel copies, average pooling, dropout); tolerances in the class remarks.</summary>
public abstract partial class BackendOpsTests
{
    [SkippableTheory]
    [InlineData(1001)]
    [InlineData(0)]
    public void AddsWithReluAndMultiply_MatchCpuExactly_IntoAThirdTensorOrEitherInput(int n)
    {
        var b = Backend;
        var rng = new Random(n + 1);
        float[] x = [.. Random(rng, n).Select(v => 100 * v)], z = Random(rng, n);
        // 0: y separate, 1: y is a, 2: y is b.
        float[] Run(IBackend be, int op, int alias)
        {
            using var ta = be.From(x, n);
            using var tb = be.From(z, n);
            using var separate = be.Allocate(n);
            var y = alias switch { 1 => ta, 2 => tb, _ => separate };
            if (op == 0) be.Add(ta, tb, y);
            else if (op == 1) be.AddRelu(ta, tb, y);
            else if (op == 2) be.AddReluBackward(ta, tb, tb, y); // masked where b ≤ 0
            else be.Multiply(ta, tb, y);
            return be.Read(y);
        }
        for (int op = 0; op < 4; op++)
        {
            float[] expected = Run(Cpu, op, 0);
            for (int alias = 0; alias < 3; alias++)
                Assert.Equal(expected, Run(b, op, alias));
        }
        if (n > 0) Assert.Contains(0f, Run(b, 1, 0)); // the ReLU cuts
        if (n > 0) Assert.Contains(0f, Run(b, 2, 0)); // so does its backward
        using var longer = b.Allocate(n + 1);
        using var shorter = b.Allocate(n);
        Assert.Throws<ArgumentException>(() => b.Add(longer, longer, shorter));
    }

    /// <summary>Two tensors concatenated along channels into a third (forward), then split back (backward).</summary>
    [SkippableTheory]
    [InlineData(3, 2, 5, 12)]
    [InlineData(2, 1, 1, 1)]     // S = 1 (a [N, C] tensor)
    [InlineData(0, 2, 3, 4)]
    public void CopyChannels_ConcatenateAndSplit_ExactlyAsCpu(int n, int c1, int c2, int s)
    {
        var b = Backend;
        var rng = new Random(c1 * 10 + c2);
        int c = c1 + c2;
        float[] first = Random(rng, n * c1 * s), second = Random(rng, n * c2 * s);
        float[] Run(IBackend be)
        {
            using var t1 = be.From(first, n, c1, s);
            using var t2 = be.From(second, n, c2, s);
            using var cat = be.Allocate(n, c, s);
            using var back1 = be.Allocate(n, c1, s);
            using var back2 = be.Allocate(n, c2, s);
            be.Fill(back2, 7f); // overwritten
            be.CopyChannels(new ChannelSlice(n, s, c1, 0, c, 0, c1), t1, cat);
            be.CopyChannels(new ChannelSlice(n, s, c2, 0, c, c1, c2), t2, cat);
            be.CopyChannels(new ChannelSlice(n, s, c, 0, c1, 0, c1), cat, back1);
            be.CopyChannels(new ChannelSlice(n, s, c, c1, c2, 0, c2), cat, back2);
            return [.. be.Read(cat), .. be.Read(back1), .. be.Read(back2)];
        }
        float[] got = Run(b);
        Assert.Equal(Run(Cpu), got);
        Assert.Equal([.. first, .. second], got.AsSpan(n * c * s).ToArray()); // the split gives back what was concatenated
        Assert.Throws<ArgumentException>(() =>
        {
            using var t = b.Allocate(1, c, s);
            b.CopyChannels(new ChannelSlice(1, s, c, 1, c, 0, c), t, t); // the source run leaves the tensor
        });
    }

    [SkippableTheory]
    [InlineData(2, 3, 7, 7, 3, 1, 1)]   // bn-inception's 3×3 stride 1 pad 1: corners see 4 of 9 values
    [InlineData(2, 2, 8, 7, 3, 2, 1)]   // stride 2 pad 1, odd width
    [InlineData(3, 2, 6, 6, 2, 2, 0)]   // no padding, disjoint windows
    [InlineData(1, 2, 5, 6, 4, 1, 2)]   // kernel 4, pad 2 (= K/2): windows of a single value
    [InlineData(0, 2, 4, 4, 3, 1, 1)]
    public void AvgPool_MatchesCpu_PaddingCountedInTheDivisor(int n, int c, int h, int w, int k, int s, int p)
    {
        var b = Backend;
        var g = new PoolGeometry(n, c, h, w, k, s, p);
        int outLen = n * c * g.OutHeight * g.OutWidth;
        var rng = new Random(h * 7 + k + p);
        float[] x = Random(rng, n * c * h * w), dy = Random(rng, outLen);
        (float[] Y, float[] Dx) Run(IBackend be, float[] input, float[] grad)
        {
            using var tx = be.From(input, n, c, h, w);
            using var ty = be.Allocate(n, c, g.OutHeight, g.OutWidth);
            using var tg = be.From(grad, n, c, g.OutHeight, g.OutWidth);
            using var tdx = be.Allocate(n, c, h, w);
            be.Fill(tdx, 9f); // overwritten
            be.AvgPool2dForward(g, tx, ty);
            be.AvgPool2dBackward(g, tg, tdx);
            return (be.Read(ty), be.Read(tdx));
        }
        var expected = Run(Cpu, x, dy);
        var bound = Run(Cpu, Abs(x), Abs(dy));
        var got = Run(b, x, dy);
        AssertProducts(expected.Y, got.Y, bound.Y, k * k + 1, "y");
        AssertProducts(expected.Dx, got.Dx, bound.Dx, k * k + 1, "dx");
        if (n > 0)
        {
            // The padding is in the divisor: a corner window of a 3×3 pad-1 pooling of ones is 4/9.
            using var ones = b.From([.. Enumerable.Repeat(1f, n * c * h * w)], n, c, h, w);
            using var y = b.Allocate(n, c, g.OutHeight, g.OutWidth);
            b.AvgPool2dForward(g, ones, y);
            int rows = Math.Min(k - p, h), cols = Math.Min(k - p, w);
            Assert.Equal(rows * cols / (float)(k * k), b.Read(y)[0]);
        }
    }

    [SkippableTheory]
    [InlineData(3, 5, 49)]
    [InlineData(2, 4, 1)]      // S = 1: the identity
    [InlineData(0, 3, 4)]
    public void GlobalAvgPool_MatchesCpu(int n, int c, int s)
    {
        var b = Backend;
        var layout = new ChannelLayout(n, c, s);
        var rng = new Random(n * 100 + s);
        float[] x = Random(rng, n * c * s), dy = Random(rng, n * c);
        (float[] Y, float[] Dx) Run(IBackend be, float[] input)
        {
            using var tx = be.From(input, n, c, s);
            using var ty = be.Allocate(n, c);
            using var tg = be.From(dy, n, c);
            using var tdx = be.Allocate(n, c, s);
            be.Fill(ty, 9f);
            be.GlobalAvgPoolForward(layout, tx, ty);
            be.GlobalAvgPoolBackward(layout, tg, tdx);
            return (be.Read(ty), be.Read(tdx));
        }
        var expected = Run(Cpu, x);
        var bound = Run(Cpu, Abs(x));
        var got = Run(b, x);
        AssertProducts(expected.Y, got.Y, bound.Y, s + 1, "y");
        Assert.Equal(expected.Dx, got.Dx);
    }

    /// <summary>
    /// The masks are the CPU's, bit for bit, for several p; the key buffer is grown for a larger
    /// batch and reused for a smaller one (stale keys would show); a sample's mask depends only on
    /// its key, not on where it sits in the batch.
    /// </summary>
    [SkippableFact]
    public void Dropout_MasksAndOutputsEqualCpuExactly()
    {
        var b = Backend;
        var rng = new Random(17);
        const int sampleSize = 37;
        ulong[] keys = [.. Enumerable.Range(0, 9).Select(_ => (ulong)rng.NextInt64() ^ ((ulong)rng.Next() << 63))];
        float[] x = [.. Random(rng, keys.Length * sampleSize).Select(v => 4 * v)];
        (float[] Mask, float[] Y) Run(IBackend be, int n, ulong[] sampleKeys, float p)
        {
            using var tx = be.From(x[..(n * sampleSize)], n, sampleSize);
            using var mask = be.Allocate(n, sampleSize);
            using var y = be.Allocate(n, sampleSize);
            be.Fill(mask, 5f);
            be.DropoutForward(n, sampleSize, sampleKeys, p, tx, mask, y);
            return (be.Read(mask), be.Read(y));
        }
        foreach (var (n, p) in new[] { (3, 0.5f), (9, 0.1f), (2, 0.9f), (9, 0f), (0, 0.5f), (4, 0.5f) })
        {
            var sampleKeys = keys[..n];
            var expected = Run(Cpu, n, sampleKeys, p);
            var got = Run(b, n, sampleKeys, p);
            Assert.Equal(expected.Mask, got.Mask);
            Assert.Equal(expected.Y, got.Y);
            float scale = 1f / (1f - p);
            Assert.All(got.Mask, m => Assert.True(m == 0f || m == scale, $"mask value {m}, expected 0 or {scale}"));
            if (n * sampleSize >= 100)
                Assert.InRange(got.Mask.Count(m => m == 0f) / (double)got.Mask.Length, p - 0.1, p + 0.1);
        }
        var alone = Run(b, 1, [keys[2]], 0.5f);
        var inBatch = Run(b, 3, keys[..3], 0.5f);
        Assert.Equal(inBatch.Mask[(2 * sampleSize)..], alone.Mask);
    }
}
