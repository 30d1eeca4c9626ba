using System.Globalization;

namespace BnDist.Core.Data;

/// <summary>
/// Per-channel standardization of the input images, as torchvision's <c>ToTensor()</c> +
/// <c>Normalize(mean, std)</c> compute it: a uint8 pixel p of channel c becomes
/// (p/255 − mean_c)/std_c, a float32 value x becomes (x − mean_c)/std_c, in float32 arithmetic
/// with mean and std rounded to float32 first — PyTorch's result, bit for bit.
/// </summary>
/// <remarks>
/// <para>The option's syntax (<c>--normalize</c>, <see cref="Parse"/>): <c>MEAN,STD</c> pairs, one
/// for every channel in channel order (<c>0.4914,0.2470,0.4822,0.2435,0.4465,0.2616</c>) or one
/// pair for all channels (<c>0.5,0.25</c>). Every std must be &gt; 0.</para>
/// <para>Computed from a training set (<see cref="Compute"/>): the mean and the population
/// standard deviation (divided by n) of each channel's pixels scaled to [0, 1], over every
/// pixel of every training image, in float64 with two passes (mean, then squared deviations).
/// A constant channel (std 0) is only centred: its std is taken as 1.</para>
/// </remarks>
public sealed class InputNormalization
{
    private readonly double[] _mean;
    private readonly double[] _std;

    /// <exception cref="ArgumentException">The lengths differ or are 0, a value is not finite, or a std is not positive.</exception>
    public InputNormalization(IReadOnlyList<double> mean, IReadOnlyList<double> std)
    {
        ArgumentNullException.ThrowIfNull(mean);
        ArgumentNullException.ThrowIfNull(std);
        if (mean.Count == 0 || mean.Count != std.Count)
            throw new ArgumentException($"--normalize: {mean.Count} means and {std.Count} stds (expected one of each per channel)");
        for (int c = 0; c < mean.Count; c++)
        {
            if (!double.IsFinite(mean[c])) throw new ArgumentException($"--normalize: mean {mean[c]} of channel {c} is not a finite number");
            if (!(std[c] > 0) || !double.IsFinite(std[c]))
                throw new ArgumentException($"--normalize: std {std[c].ToString(CultureInfo.InvariantCulture)} of channel {c} must be a number > 0");
        }
        _mean = [.. mean];
        _std = [.. std];
    }

    /// <summary>Fashion-MNIST's training-set statistics (<see cref="Dataset.Mean"/>, <see cref="Dataset.Std"/>): the IDX default.</summary>
    public static InputNormalization FashionMnist { get; } = new([Dataset.Mean], [Dataset.Std]);

    /// <summary>Mean 0, std 1 on every channel: float32 data taken as it is (no arithmetic at all).</summary>
    public static InputNormalization Identity(int channels) => new(new double[channels], Enumerable.Repeat(1.0, channels).ToArray());

    public int Channels => _mean.Length;

    public IReadOnlyList<double> Mean => _mean;

    public IReadOnlyList<double> Std => _std;

    /// <summary>Mean 0 and std 1 everywhere.</summary>
    public bool IsIdentity => _mean.All(m => m == 0) && _std.All(s => s == 1);

    /// <summary>Parses <c>MEAN,STD[,MEAN,STD…]</c> (invariant culture); "" is not a value here (it means "the data's default").</summary>
    /// <exception cref="ArgumentException">One line starting with "--normalize:".</exception>
    public static InputNormalization Parse(string spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        string[] parts = spec.Split(',', StringSplitOptions.TrimEntries);
        var numbers = new double[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!double.TryParse(parts[i], NumberStyles.Float, CultureInfo.InvariantCulture, out numbers[i]))
                throw new ArgumentException($"--normalize: expected MEAN,STD[,MEAN,STD…] (one pair per channel, or one pair for all), got '{spec}'");
        if (numbers.Length % 2 != 0)
            throw new ArgumentException($"--normalize: {numbers.Length} numbers do not make MEAN,STD pairs (one pair per channel, or one pair for all), got '{spec}'");
        return new InputNormalization([.. numbers.Where((_, i) => i % 2 == 0)], [.. numbers.Where((_, i) => i % 2 == 1)]);
    }

    /// <summary>The canonical spelling of a valid spec (<see cref="ToSpec"/>), or the spec unchanged when it is not valid or "".</summary>
    public static string Canonical(string spec)
    {
        if (string.IsNullOrWhiteSpace(spec)) return "";
        try { return Parse(spec).ToSpec(); }
        catch (ArgumentException) { return spec; }
    }

    /// <summary>
    /// This normalization for data of <paramref name="channels"/> channels: one pair is repeated
    /// for every channel; otherwise the count must match.
    /// </summary>
    /// <exception cref="ArgumentException">The count matches neither (the message names <paramref name="data"/>).</exception>
    public InputNormalization ForChannels(int channels, string data)
    {
        if (Channels == channels) return this;
        if (Channels == 1) return new InputNormalization(Enumerable.Repeat(_mean[0], channels).ToArray(), Enumerable.Repeat(_std[0], channels).ToArray());
        throw new ArgumentException($"--normalize: {Channels} MEAN,STD pairs for {data} of {channels} channel{(channels == 1 ? "" : "s")} " +
                                    "(give one pair per channel, or one pair for all)");
    }

    /// <summary>
    /// The statistics of <paramref name="train"/>'s uint8 pixels scaled to [0, 1], per channel
    /// (see the remarks). Pixels take 256 values, so each pass runs over a histogram: the same
    /// float64 sums as over the pixels, grouped by value.
    /// </summary>
    /// <exception cref="ArgumentException">The split holds float32 data or no samples.</exception>
    public static InputNormalization Compute(DataSplit train)
    {
        ArgumentNullException.ThrowIfNull(train);
        if (train.IsFloat) throw new ArgumentException("only uint8 data has statistics to compute; float32 data is taken as it is", nameof(train));
        if (train.Count == 0) throw new ArgumentException($"{train.ImagesSource}: no samples to compute the normalization from", nameof(train));
        int channels = train.Channels, plane = train.Rows * train.Cols;
        var histogram = new long[channels, 256];
        var pixels = train.Pixels;
        for (int n = 0; n < train.Count; n++)
            for (int c = 0; c < channels; c++)
                foreach (byte p in pixels.Slice((n * channels + c) * plane, plane))
                    histogram[c, p]++;
        var mean = new double[channels];
        var std = new double[channels];
        double count = (double)train.Count * plane;
        for (int c = 0; c < channels; c++)
        {
            double sum = 0;
            for (int v = 0; v < 256; v++) sum += histogram[c, v] * (v / 255.0);
            mean[c] = sum / count;
            double squares = 0;
            for (int v = 0; v < 256; v++)
            {
                double d = v / 255.0 - mean[c];
                squares += histogram[c, v] * d * d;
            }
            std[c] = Math.Sqrt(squares / count);
            if (std[c] == 0) std[c] = 1;
        }
        return new InputNormalization(mean, std);
    }

    /// <summary>The <c>--normalize</c> value that gives exactly this normalization (round-trip precision).</summary>
    public string ToSpec() =>
        string.Join(",", _mean.Select((m, c) => $"{m.ToString("R", CultureInfo.InvariantCulture)},{_std[c].ToString("R", CultureInfo.InvariantCulture)}"));

    /// <summary>For people: <c>mean 0.4914,0.4822,0.4465 std 0.2470,0.2435,0.2616</c>.</summary>
    public override string ToString() =>
        $"mean {string.Join(",", _mean.Select(m => m.ToString("F4", CultureInfo.InvariantCulture)))} " +
        $"std {string.Join(",", _std.Select(s => s.ToString("F4", CultureInfo.InvariantCulture)))}";

    /// <summary>
    /// Normalizes a whole split (<see cref="Channels"/> must equal its channels) into a new
    /// float32 array, NCHW. Float32 data under the identity is returned as it is, not copied.
    /// </summary>
    internal float[] Apply(DataSplit split)
    {
        if (split.Channels != Channels)
            throw new ArgumentException($"--normalize: {Channels} channels for {split.ImagesSource} of {split.Channels}");
        int channels = Channels, plane = split.Rows * split.Cols;
        if (split.IsFloat && IsIdentity) return split.ValuesArray!;
        var result = GC.AllocateUninitializedArray<float>(split.Count * channels * plane);
        if (split.IsFloat)
        {
            var values = split.Values;
            for (int n = 0; n < split.Count; n++)
                for (int c = 0; c < channels; c++)
                {
                    float m = (float)_mean[c], s = (float)_std[c];
                    int start = (n * channels + c) * plane;
                    for (int i = start; i < start + plane; i++) result[i] = (values[i] - m) / s;
                }
            return result;
        }
        var tables = new float[channels][];
        for (int c = 0; c < channels; c++)
        {
            float m = (float)_mean[c], s = (float)_std[c];
            tables[c] = new float[256];
            for (int p = 0; p < 256; p++) tables[c][p] = (p / 255f - m) / s;
        }
        var pixels = split.Pixels;
        for (int n = 0; n < split.Count; n++)
            for (int c = 0; c < channels; c++)
            {
                var table = tables[c];
                int start = (n * channels + c) * plane;
                for (int i = start; i < start + plane; i++) result[i] = table[pixels[i]];
            }
        return result;
    }
}
