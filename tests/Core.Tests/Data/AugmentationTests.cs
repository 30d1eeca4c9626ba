using BnDist.Core.Data;

namespace BnDist.Core.Tests.Data;

/// <summary>
/// Random crop and flip: what each does to an image, that the draws depend on (seed, epoch,
/// sample index) alone, and that they are as random as they claim.
/// </summary>
public sealed class AugmentationTests
{
    private const int C = 2, H = 5, W = 7, Size = C * H * W;

    /// <summary>Sample s of a batch: every value distinct and non-zero, so a moved or zeroed value is seen.</summary>
    private static float[] Batch(params int[] samples) =>
        samples.SelectMany(s => Enumerable.Range(0, Size).Select(i => 1000f * (s + 1) + i + 1)).ToArray();

    private static float At(ReadOnlySpan<float> sample, int c, int y, int x) => sample[(c * H + y) * W + x];

    [Theory]
    [InlineData("crop:4,flip", 4, true, "crop:4,flip")]
    [InlineData(" flip , crop:12 ", 12, true, "crop:12,flip")]
    [InlineData("crop:1", 1, false, "crop:1")]
    [InlineData("flip", 0, true, "flip")]
    public void The_spec_lists_crop_and_flip_in_any_order(string spec, int padding, bool flip, string canonical)
    {
        Assert.Equal(new Augmentation(padding, flip), Augmentation.Parse(spec));
        Assert.Equal(canonical, Augmentation.Canonical(spec));
        Assert.Equal(canonical, Augmentation.Parse(spec)!.ToString());
    }

    [Theory]
    [InlineData("")]
    [InlineData("none")]
    [InlineData(null)]
    public void No_augmentation_is_null(string? spec)
    {
        Assert.Null(Augmentation.Parse(spec));
        Assert.Equal("", Augmentation.Canonical(spec));
    }

    [Theory]
    [InlineData("crop:0", "--augment: 'crop:0': the crop padding must be an integer in [1, 1024]")]
    [InlineData("crop:-1", "--augment: 'crop:-1': the crop padding must be an integer in [1, 1024]")]
    [InlineData("crop", "--augment: unknown augmentation 'crop' in 'crop' (expected crop:P, flip, or both: crop:4,flip)")]
    [InlineData("rotate:10", "--augment: unknown augmentation 'rotate:10'")]
    [InlineData("flip,flip", "--augment: 'flip' given twice in 'flip,flip'")]
    [InlineData("crop:2,crop:4", "--augment: 'crop:4' given twice")]
    public void A_malformed_spec_is_one_line_naming_the_option(string spec, string expected)
    {
        var e = Assert.Throws<ArgumentException>(() => Augmentation.Parse(spec));
        Assert.StartsWith(expected, e.Message);
    }

    [Fact]
    public void A_sample_is_transformed_the_same_way_whatever_batch_it_is_in()
    {
        var augmentation = new Augmentation(3, true);
        // Sample 9 alone, first of three, last of three (as rank 0, rank 1, … of any K would hold it).
        var alone = Batch(9);
        augmentation.Apply(alone, [9], C, H, W, seed: 5, epoch: 2);
        foreach (int[] batch in new[] { new[] { 9, 4, 1 }, new[] { 0, 2, 9 }, new[] { 9, 9 } })
        {
            var images = Batch(batch);
            augmentation.Apply(images, batch, C, H, W, seed: 5, epoch: 2);
            for (int i = 0; i < batch.Length; i++)
                if (batch[i] == 9) Assert.Equal(alone, images.AsSpan(i * Size, Size).ToArray());
        }
        // Another epoch or seed draws anew (for some of 50 samples at least).
        int[] many = [.. Enumerable.Range(0, 50)];
        var (a, b, c) = (Batch(many), Batch(many), Batch(many));
        augmentation.Apply(a, many, C, H, W, seed: 5, epoch: 2);
        augmentation.Apply(b, many, C, H, W, seed: 5, epoch: 3);
        augmentation.Apply(c, many, C, H, W, seed: 6, epoch: 2);
        Assert.NotEqual(a, b);
        Assert.NotEqual(a, c);
    }

    [Fact]
    public void Crop_moves_the_content_by_the_drawn_offset_and_zeros_come_in()
    {
        var crop = new Augmentation(3, false);
        int[] samples = [.. Enumerable.Range(0, 1000)];
        var images = Batch(samples);
        var original = Batch(samples);
        crop.Apply(images, samples, C, H, W, seed: 1, epoch: 0);
        var seen = new HashSet<(int, int)>();
        for (int s = 0; s < samples.Length; s++)
        {
            var (dy, dx, mirror) = crop.Draw(Augmentation.SampleKey(1, 0, s));
            Assert.False(mirror);
            Assert.InRange(dy, -3, 3);
            Assert.InRange(dx, -3, 3);
            seen.Add((dy, dx));
            var before = original.AsSpan(s * Size, Size);
            var after = images.AsSpan(s * Size, Size);
            for (int c = 0; c < C; c++)
                for (int y = 0; y < H; y++)
                    for (int x = 0; x < W; x++)
                    {
                        int sy = y + dy, sx = x + dx;
                        float expected = sy is >= 0 and < H && sx is >= 0 and < W ? At(before, c, sy, sx) : 0f;
                        Assert.Equal(expected, At(after, c, y, x));
                    }
        }
        Assert.Equal(49, seen.Count);   // every offset of [−3, 3]² drawn in 1000 samples (each is missed with p = (48/49)^1000 ≈ 1e-9)
    }

    [Fact]
    public void Shift_in_place_equals_a_copying_reference_for_every_offset_up_to_and_beyond_the_image()
    {
        for (int dy = -H - 1; dy <= H + 1; dy++)
            for (int dx = -W - 1; dx <= W + 1; dx++)
            {
                var image = Enumerable.Range(1, H * W).Select(i => (float)i).ToArray();
                var expected = new float[H * W];
                for (int y = 0; y < H; y++)
                    for (int x = 0; x < W; x++)
                        if (y + dy is >= 0 and < H && x + dx is >= 0 and < W) expected[y * W + x] = image[(y + dy) * W + x + dx];
                Augmentation.Shift(image, H, W, dy, dx);
                Assert.True(expected.SequenceEqual(image), $"shift ({dy}, {dx})");
            }
    }

    [Fact]
    public void Flip_mirrors_every_row_of_every_channel_of_the_samples_it_draws()
    {
        var flip = new Augmentation(0, true);
        int[] samples = [.. Enumerable.Range(0, 40)];
        var images = Batch(samples);
        var original = Batch(samples);
        flip.Apply(images, samples, C, H, W, seed: 2, epoch: 1);
        int mirrored = 0;
        for (int s = 0; s < samples.Length; s++)
        {
            var (dy, dx, mirror) = flip.Draw(Augmentation.SampleKey(2, 1, s));
            Assert.Equal((0, 0), (dy, dx));
            mirrored += mirror ? 1 : 0;
            var before = original.AsSpan(s * Size, Size);
            var after = images.AsSpan(s * Size, Size);
            for (int c = 0; c < C; c++)
                for (int y = 0; y < H; y++)
                    for (int x = 0; x < W; x++)
                        Assert.Equal(At(before, c, y, mirror ? W - 1 - x : x), At(after, c, y, x));
        }
        Assert.InRange(mirrored, 1, samples.Length - 1);
    }

    [Fact]
    public void Flip_has_probability_one_half_and_crop_offsets_are_uniform()
    {
        // n = 20000 draws: the flip count is Binomial(n, 1/2), σ = 70.7; 5σ bounds fail once in 3.5 million seeds.
        const int n = 20000;
        var both = new Augmentation(4, true);
        int flips = 0;
        var dyCounts = new int[9];
        for (int s = 0; s < n; s++)
        {
            var (dy, _, mirror) = both.Draw(Augmentation.SampleKey(17, 3, s));
            flips += mirror ? 1 : 0;
            dyCounts[dy + 4]++;
        }
        Assert.InRange(flips, n / 2 - 354, n / 2 + 354);
        // Each of the 9 offsets: Binomial(n, 1/9), σ = 44.4; 5σ each.
        Assert.All(dyCounts, count => Assert.InRange(count, n / 9 - 222, n / 9 + 222));
    }

    [Fact]
    public void Apply_allocates_nothing()
    {
        var augmentation = new Augmentation(2, true);
        int[] samples = [3, 1, 4, 1, 5];
        var images = Batch(samples);
        augmentation.Apply(images, samples, C, H, W, 0, 0);
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int epoch = 0; epoch < 100; epoch++) augmentation.Apply(images, samples, C, H, W, 0, epoch);
        Assert.Equal(before, GC.GetAllocatedBytesForCurrentThread());
    }
}
