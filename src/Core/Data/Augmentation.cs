using System.Globalization;

namespace BnDist.Core.Data;

/// <summary>
/// Random transformations of the training images (<c>--augment</c>, docs/data.md), applied in
/// place to each normalized [C, H, W] sample of a training batch; evaluation never sees them.
/// <list type="bullet">
/// <item><c>crop:P</c>: torchvision's <c>RandomCrop((H, W), padding=P)</c> on the normalized
/// tensor: the image is padded with P zeros on every side (after normalization, so the padding
/// is the value 0: the channel's mean for statistics computed from the data) and an H×W window
/// is taken at a uniform offset in [0, 2P]² of the padded image. Equivalently the content moves
/// by (dy, dx) ∈ [−P, P]²: out(y, x) = in(y + dy, x + dx), 0 outside the image.</item>
/// <item><c>flip</c>: torchvision's <c>RandomHorizontalFlip()</c>: with probability 1/2 every row
/// is mirrored, out(y, x) = in(y, W − 1 − x).</item>
/// </list>
/// Crop first, then flip, as <c>Compose([RandomCrop(…), RandomHorizontalFlip()])</c>.
/// </summary>
/// <remarks>
/// Every draw is a counter-based hash (SplitMix64's finalizer) of (seed, epoch, the sample's
/// index in the data set): a sample is transformed the same way in an epoch whichever rank holds
/// it and whatever else is in its batch, so a run's data is the same for any number of workers.
/// No state, no allocation: one instance may serve several threads.
/// </remarks>
/// <param name="CropPadding">P of <c>crop:P</c> (0: no crop).</param>
/// <param name="Flip">Whether <c>flip</c> is on.</param>
public sealed record Augmentation(int CropPadding, bool Flip)
{
    /// <summary>The largest crop padding accepted.</summary>
    public const int MaxCropPadding = 1024;

    /// <summary>Separates augmentation's draws from dropout's (<see cref="Backends.DropoutMask"/>), which hash the same seed.</summary>
    private const ulong Stream = 0x6A09E667F3BCC909UL;

    private const ulong Gamma = 0x9E3779B97F4A7C15UL;

    /// <summary>
    /// Parses <c>crop:P,flip</c>: a comma-separated list of <c>crop:P</c> (1 ≤ P ≤ 1024) and
    /// <c>flip</c>, each at most once, in any order; "" or "none" is no augmentation (null).
    /// </summary>
    /// <exception cref="ArgumentException">One line starting with "--augment:".</exception>
    public static Augmentation? Parse(string? spec)
    {
        if (string.IsNullOrWhiteSpace(spec) || spec.Trim() == "none") return null;
        int crop = 0;
        bool flip = false;
        foreach (string part in spec.Split(',', StringSplitOptions.TrimEntries))
        {
            if (part == "flip" && !flip)
                flip = true;
            else if (part.StartsWith("crop:", StringComparison.Ordinal) && crop == 0)
            {
                if (!int.TryParse(part.AsSpan(5), NumberStyles.None, CultureInfo.InvariantCulture, out crop) || crop is < 1 or > MaxCropPadding)
                    throw new ArgumentException($"--augment: '{part}': the crop padding must be an integer in [1, {MaxCropPadding}]");
            }
            else
                throw new ArgumentException(part is "flip" || part.StartsWith("crop:", StringComparison.Ordinal)
                    ? $"--augment: '{part}' given twice in '{spec}'"
                    : $"--augment: unknown augmentation '{part}' in '{spec}' (expected crop:P, flip, or both: crop:4,flip)");
        }
        return new Augmentation(crop, flip);
    }

    /// <summary>The canonical spelling of a valid spec ("" for none), or the spec unchanged when it is not valid.</summary>
    public static string Canonical(string? spec)
    {
        try { return Parse(spec)?.ToString() ?? ""; }
        catch (ArgumentException) { return spec!; }
    }

    /// <summary><c>crop:4,flip</c>, <c>crop:4</c>, <c>flip</c> (what <see cref="Parse"/> reads back).</summary>
    public override string ToString() =>
        string.Join(",", new[] { CropPadding > 0 ? $"crop:{CropPadding}" : null, Flip ? "flip" : null }.Where(p => p is not null));

    /// <summary>The key of a sample's draws in an epoch.</summary>
    public static ulong SampleKey(ulong seed, int epoch, int sampleIndex) =>
        SplitMix64.Mix(SplitMix64.Mix(SplitMix64.Mix(seed ^ Stream) ^ (ulong)(uint)epoch) ^ (ulong)(uint)sampleIndex);

    /// <summary>The transformation drawn for <paramref name="key"/>: the content's shift (0, 0 without crop) and whether it is mirrored.</summary>
    public (int Dy, int Dx, bool Mirror) Draw(ulong key)
    {
        int dy = 0, dx = 0;
        if (CropPadding > 0)
        {
            ulong span = 2 * (ulong)CropPadding + 1;   // offsets 0 … 2P of the padded image, uniform (multiply-shift; bias < 2^-53)
            dy = (int)Math.BigMul(SplitMix64.Mix(key + Gamma), span, out _) - CropPadding;
            dx = (int)Math.BigMul(SplitMix64.Mix(key + unchecked(2 * Gamma)), span, out _) - CropPadding;
        }
        bool mirror = Flip && (SplitMix64.Mix(key + unchecked(3 * Gamma)) >> 63) != 0;
        return (dy, dx, mirror);
    }

    /// <summary>
    /// Transforms the samples of a batch in place: <paramref name="images"/> holds
    /// <paramref name="sampleIndices"/>.Length samples of [<paramref name="channels"/>,
    /// <paramref name="rows"/>, <paramref name="cols"/>], sample i being data-set sample
    /// <paramref name="sampleIndices"/>[i]. Allocates nothing.
    /// </summary>
    public void Apply(Span<float> images, ReadOnlySpan<int> sampleIndices, int channels, int rows, int cols, ulong seed, int epoch)
    {
        int plane = rows * cols, size = channels * plane;
        if ((long)sampleIndices.Length * size > images.Length)
            throw new ArgumentException($"images holds {images.Length} values, need {sampleIndices.Length} samples × {size}", nameof(images));
        for (int i = 0; i < sampleIndices.Length; i++)
        {
            var (dy, dx, mirror) = Draw(SampleKey(seed, epoch, sampleIndices[i]));
            var sample = images.Slice(i * size, size);
            for (int c = 0; c < channels; c++)
            {
                var image = sample.Slice(c * plane, plane);
                Shift(image, rows, cols, dy, dx);
                if (mirror)
                    for (int y = 0; y < rows; y++) image.Slice(y * cols, cols).Reverse();
            }
        }
    }

    /// <summary>
    /// out(y, x) = in(y + dy, x + dx), 0 outside, in place: rows are visited in the order that
    /// reads each source row before it is overwritten (Span.CopyTo handles a row's own overlap).
    /// </summary>
    internal static void Shift(Span<float> image, int rows, int cols, int dy, int dx)
    {
        if (dy == 0 && dx == 0) return;
        int kept = cols - Math.Abs(dx);
        for (int k = 0; k < rows; k++)
        {
            int y = dy >= 0 ? k : rows - 1 - k, from = y + dy;
            var to = image.Slice(y * cols, cols);
            if (from < 0 || from >= rows || kept <= 0)
            {
                to.Clear();
                continue;
            }
            var source = image.Slice(from * cols, cols);
            if (dx >= 0)
            {
                source.Slice(dx, kept).CopyTo(to);
                to.Slice(kept).Clear();
            }
            else
            {
                source.Slice(0, kept).CopyTo(to.Slice(-dx));
                to.Slice(0, -dx).Clear();
            }
        }
    }
}
