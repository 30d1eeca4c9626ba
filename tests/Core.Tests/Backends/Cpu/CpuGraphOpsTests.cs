using BnDist.Core.Backends;
using BnDist.Core.Backends.Cpu;
using BnDist.Core.Tests.Support;

namespace BnDist.Core.Tests.Backends.Cpu;

/// <summary>
/// The CPU graph ops of issue 12 against plain scalar statements: sums and products are single
/// float32 operations, channel copies move bits, and dropout's mask is <see cref="DropoutMask.Keep"/>,
/// so every comparison is exact. Sizes span several chunks of the two-thread pool, where aliasing
/// or a per-chunk offset would show; `make test` runs these on every instruction-set path.
/// </summary>
public sealed class CpuGraphOpsTests : IDisposable
{
    private readonly CpuBackend _backend = new(2);

    public void Dispose() => _backend.Dispose();

    [Theory]
    [InlineData(1)]
    [InlineData(17)]           // not a multiple of any vector width
    [InlineData(100_003)]      // six chunks of ≥ 16384
    public void AddAndMultiply_EqualScalarFloat32_IntoAThirdTensorEitherInputOrBoth(int n)
    {
        float[] a = Values(n, 1, 100), b = Values(n, 2, 1);
        foreach (bool multiply in new[] { false, true })
        {
            float Op(float u, float v) => multiply ? u * v : u + v;
            float[] expected = [.. a.Zip(b, Op)];
            Assert.Equal(expected, Run(multiply, alias: "none"));
            Assert.Equal(expected, Run(multiply, alias: "a"));
            Assert.Equal(expected, Run(multiply, alias: "b"));
            Assert.Equal([.. a.Select(u => Op(u, u))], Run(multiply, alias: "all"));   // a, b and y one tensor
        }

        float[] Run(bool multiply, string alias)
        {
            var ta = _backend.From(a, n);
            var tb = alias == "all" ? ta : _backend.From(b, n);
            var y = alias switch { "a" or "all" => ta, "b" => tb, _ => _backend.Allocate(n) };
            if (multiply) _backend.Multiply(ta, tb, y);
            else _backend.Add(ta, tb, y);
            return _backend.Read(y);
        }
    }

    [Fact]
    public void AddAndMultiply_RefuseTensorsOfDifferentLengths()
    {
        var e = Assert.Throws<ArgumentException>(() => _backend.Add(_backend.Allocate(5), _backend.Allocate(4), _backend.Allocate(5)));
        Assert.StartsWith("b: 5 elements", e.Message);
        e = Assert.Throws<ArgumentException>(() => _backend.Multiply(_backend.Allocate(5), _backend.Allocate(5), _backend.Allocate(6)));
        Assert.StartsWith("y: 5 elements", e.Message);
    }

    /// <summary>
    /// [N, C1, S] and [N, C2, S] copied into [N, C1 + C2, S] (a concatenation's forward) and split
    /// back (its backward). The values include NaNs with payloads, −0, a subnormal and ±∞, which
    /// any arithmetic on the way would change; bits are compared, not values.
    /// </summary>
    [Theory]
    [InlineData(3, 2, 5, 12)]
    [InlineData(2, 1, 1, 1)]       // S = 1: [N, C] tensors
    [InlineData(4000, 1, 2, 9)]    // runs of 9 and 18 values: 2 and 4 chunks of samples
    public void CopyChannels_ConcatenateThenSplit_GivesBackTheOriginalsBitForBit(int n, int c1, int c2, int s)
    {
        int c = c1 + c2;
        float[] first = Specials(n * c1 * s, 3), second = Specials(n * c2 * s, 4);
        var cat = _backend.Allocate(n, c, s);
        _backend.CopyChannels(new ChannelSlice(n, s, c1, 0, c, 0, c1), _backend.From(first, n, c1, s), cat);
        _backend.CopyChannels(new ChannelSlice(n, s, c2, 0, c, c1, c2), _backend.From(second, n, c2, s), cat);
        var back1 = _backend.Allocate(n, c1, s);
        var back2 = _backend.Allocate(n, c2, s);
        _backend.Fill(back2, 7f);   // overwritten
        _backend.CopyChannels(new ChannelSlice(n, s, c, 0, c1, 0, c1), cat, back1);
        _backend.CopyChannels(new ChannelSlice(n, s, c, c1, c2, 0, c2), cat, back2);

        float[] expectedCat = [.. Enumerable.Range(0, n).SelectMany(i =>
            first.Skip(i * c1 * s).Take(c1 * s).Concat(second.Skip(i * c2 * s).Take(c2 * s)))];
        Assert.Equal(Bits(expectedCat), Bits(_backend.Read(cat)));
        Assert.Equal(Bits(first), Bits(_backend.Read(back1)));
        Assert.Equal(Bits(second), Bits(_backend.Read(back2)));
    }

    [Theory]
    [InlineData(4, 2, 6, 0, 3)]    // the source run [2, 5) leaves the 4 source channels
    [InlineData(6, 0, 4, 2, 3)]    // the destination run [2, 5) leaves the 4 destination channels
    [InlineData(4, -1, 4, 0, 2)]
    [InlineData(4, 0, 4, -1, 2)]
    [InlineData(4, 0, 4, 0, -1)]
    public void CopyChannels_RefusesASliceOutsideEitherTensor(int srcChannels, int srcOffset, int dstChannels, int dstOffset, int count)
    {
        var slice = new ChannelSlice(2, 3, srcChannels, srcOffset, dstChannels, dstOffset, count);
        var e = Assert.Throws<ArgumentException>(() =>
            _backend.CopyChannels(slice, _backend.Allocate(2, srcChannels, 3), _backend.Allocate(2, dstChannels, 3)));
        Assert.EndsWith("the copied channels must lie within both tensors", e.Message);
    }

    [Fact]
    public void CopyChannels_RefusesTensorsThatAreNotTheSliceShape()
    {
        var slice = new ChannelSlice(2, 3, 4, 0, 4, 0, 4);
        var e = Assert.Throws<ArgumentException>(() => _backend.CopyChannels(slice, _backend.Allocate(1, 4, 3), _backend.Allocate(2, 4, 3)));
        Assert.StartsWith("source: 24 elements", e.Message);
        e = Assert.Throws<ArgumentException>(() => _backend.CopyChannels(slice, _backend.Allocate(2, 4, 3), _backend.Allocate(2, 5, 3)));
        Assert.StartsWith("destination: 24 elements", e.Message);
    }

    [Fact]
    public void EveryGraphOp_AcceptsAnEmptyBatch()
    {
        var empty = _backend.Allocate(0, 3, 4, 4);
        var other = _backend.Allocate(0, 3, 4, 4);
        _backend.Add(empty, other, empty);
        _backend.Multiply(empty, other, other);
        var cat = _backend.Allocate(0, 6, 4, 4);
        _backend.CopyChannels(new ChannelSlice(0, 16, 3, 0, 6, 3, 3), empty, cat);
        _backend.CopyChannels(new ChannelSlice(0, 16, 6, 3, 3, 0, 3), cat, other);

        var g = new PoolGeometry(0, 3, 4, 4, 3, 2, 1);
        var pooled = _backend.Allocate(0, 3, g.OutHeight, g.OutWidth);
        _backend.AvgPool2dForward(g, empty, pooled);
        _backend.AvgPool2dBackward(g, pooled, other);
        _backend.MaxPool2dForward(g, empty, pooled);
        _backend.MaxPool2dBackward(g, empty, pooled, pooled, other);

        var means = _backend.Allocate(0, 3);
        _backend.GlobalAvgPoolForward(new ChannelLayout(0, 3, 16), empty, means);
        _backend.GlobalAvgPoolBackward(new ChannelLayout(0, 3, 16), means, other);

        _backend.DropoutForward(0, 48, [], 0.5f, empty, other, _backend.Allocate(0, 3, 4, 4));
        Assert.Equal(0, other.Length);
    }

    [Fact]
    public void Pooling_RefusesAGeometryWithNoWholeWindow()
    {
        // 2 rows under a 3-row window taken every 3 rows: ⌊(2 − 3)/3⌋ + 1 = 0 output rows.
        var g = new PoolGeometry(1, 1, 2, 5, 3, 3);
        Assert.Equal(0, g.OutHeight);
        var e = Assert.Throws<ArgumentException>(() => _backend.AvgPool2dForward(g, _backend.Allocate(1, 1, 2, 5), _backend.Allocate(1, 1, 1, 1)));
        Assert.EndsWith("no window fits", e.Message);
    }

    /// <summary>
    /// 40 samples of 1037 values (two chunks of ≥ 15 samples), then 3 other samples through
    /// the same backend, whose reused key buffer must not leak the first call's keys.
    /// </summary>
    [Theory]
    [InlineData(0.3f)]
    [InlineData(0.5f)]
    public void DropoutForward_MaskIsDropoutMaskKeepElementByElementAndYIsXTimesTheMask(float p)
    {
        const int size = 1037;
        float scale = 1f / (1f - p);
        var rng = new Random(5);
        foreach (int n in new[] { 40, 3 })
        {
            ulong[] keys = [.. Enumerable.Range(0, n).Select(_ => (ulong)rng.NextInt64() ^ ((ulong)rng.Next(2) << 63))];
            float[] x = Values(n * size, n, 2);
            var mask = _backend.Allocate(n, size);
            var y = _backend.Allocate(n, size);
            _backend.Fill(mask, 5f);   // overwritten
            _backend.DropoutForward(n, size, keys, p, _backend.From(x, n, size), mask, y);
            float[] m = _backend.Read(mask), got = _backend.Read(y);
            for (int i = 0; i < n; i++)
                for (int e = 0; e < size; e++)
                {
                    int at = i * size + e;
                    Assert.Equal(DropoutMask.Keep(keys[i], e, p) ? scale : 0f, m[at]);
                    Assert.Equal(x[at] * m[at], got[at]);
                }
        }
    }

    [Fact]
    public void DropoutForward_RefusesAProbabilityOutsideZeroToOneAndAKeyCountOtherThanN()
    {
        var t = _backend.Allocate(2, 3);
        Assert.Equal("p", Assert.Throws<ArgumentOutOfRangeException>(() => _backend.DropoutForward(2, 3, [1, 2], 1f, t, t, t)).ParamName);
        var e = Assert.Throws<ArgumentException>(() => _backend.DropoutForward(2, 3, [1], 0.5f, t, t, t));
        Assert.Equal("1 sample keys for a batch of 2", e.Message);
    }

    private static float[] Values(int n, int seed, double scale) => GradientCheck.Random(n, seed, scale);

    /// <summary>Random values with every 7th one replaced by a NaN with a payload, −0, a subnormal or ±∞.</summary>
    private static float[] Specials(int n, int seed)
    {
        float[] special = [BitConverter.Int32BitsToSingle(0x7FC0_1234), BitConverter.Int32BitsToSingle(unchecked((int)0xFFC0_0001)),
            -0f, float.Epsilon * 3, float.PositiveInfinity, float.NegativeInfinity];
        float[] v = Values(n, seed, 10);
        for (int i = 0; i < n; i += 7) v[i] = special[i / 7 % special.Length];
        return v;
    }

    private static int[] Bits(float[] v) => [.. v.Select(BitConverter.SingleToInt32Bits)];
}
