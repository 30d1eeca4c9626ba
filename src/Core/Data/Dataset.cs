namespace BnDist.Core.Data;

/// <summary>
/// An in-memory split of a data set: <see cref="Count"/> images as normalized float32,
/// contiguous in NCHW layout [Count, <see cref="Channels"/>, <see cref="Rows"/>, <see cref="Cols"/>],
/// and their class labels in [0, <see cref="Classes"/>). Made from the files by
/// <see cref="Load"/> or <see cref="DataSets"/> (docs/data.md): Fashion-MNIST's IDX files
/// (1×28×28, 10 classes, pixels p stored as (p/255 − <see cref="Mean"/>) / <see cref="Std"/>)
/// or safetensors files of any shape, normalized per channel (<see cref="InputNormalization"/>).
/// </summary>
/// <remarks>Immutable after construction; safe to read from several threads.</remarks>
public sealed class Dataset
{
    /// <summary>Mean of the Fashion-MNIST training pixels after scaling to [0, 1].</summary>
    public const float Mean = 0.2860f;

    /// <summary>Standard deviation of the Fashion-MNIST training pixels after scaling to [0, 1].</summary>
    public const float Std = 0.3530f;

    /// <summary>Number of classes of Fashion-MNIST.</summary>
    public const int ClassCount = 10;

    /// <summary>Environment variable that, when set, names the data directory (see <see cref="DefaultDirectory"/>).</summary>
    public const string DataEnvironmentVariable = "BNDIST_DATA";

    /// <summary>Where the embedded subset lives, relative to the repository root or the executable.</summary>
    public static readonly string EmbeddedRelativePath = Path.Combine("data", "fashion-mnist");

    /// <summary>The file whose presence marks a data directory in <see cref="DefaultDirectory"/>'s search.</summary>
    public const string MarkerFile = "t10k-labels-idx1-ubyte.gz";

    private static readonly float[] NormalizeTable = BuildNormalizeTable();

    private readonly float[] _images;
    private readonly int[] _labels;

    /// <summary>
    /// Wraps already-normalized Fashion-MNIST-shaped images (taking ownership of the arrays):
    /// <paramref name="images"/> is [count, 1, rows, cols] with count = <paramref name="labels"/>.Length, 10 classes.
    /// </summary>
    /// <exception cref="ArgumentException">The lengths disagree or a label is not in [0, 10).</exception>
    public Dataset(float[] images, byte[] labels, int rows, int cols)
        : this(images, ToInts(labels), 1, rows, cols, ClassCount)
    {
    }

    /// <summary>
    /// Wraps already-normalized images (taking ownership of the arrays): <paramref name="images"/>
    /// is [count, channels, rows, cols] with count = <paramref name="labels"/>.Length.
    /// </summary>
    /// <exception cref="ArgumentException">The lengths disagree or a label is not in [0, <paramref name="classes"/>).</exception>
    public Dataset(float[] images, int[] labels, int channels, int rows, int cols, int classes)
    {
        ArgumentNullException.ThrowIfNull(images);
        ArgumentNullException.ThrowIfNull(labels);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(channels);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(rows);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(cols);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(classes);
        long expected = (long)labels.Length * channels * rows * cols;
        if (expected != images.Length)
            throw new ArgumentException(
                $"images has {images.Length} values, expected {labels.Length} labels × {channels}×{rows}×{cols} = {expected}",
                nameof(images));
        int bad = labels.AsSpan().IndexOfAnyExceptInRange(0, classes - 1);
        if (bad >= 0)
            throw new ArgumentException($"label {labels[bad]} at index {bad} is not in [0, {classes})", nameof(labels));
        _images = images;
        _labels = labels;
        (Channels, Rows, Cols, Classes) = (channels, rows, cols, classes);
    }

    /// <summary>Number of samples.</summary>
    public int Count => _labels.Length;

    /// <summary>Channels per image (1: grayscale, 3: RGB).</summary>
    public int Channels { get; }

    /// <summary>Image height.</summary>
    public int Rows { get; }

    /// <summary>Image width.</summary>
    public int Cols { get; }

    /// <summary>Number of classes: labels lie in [0, Classes) (10 for IDX data; docs/data.md for safetensors).</summary>
    public int Classes { get; }

    /// <summary>[Channels, Rows, Cols]: the shape a model's input sample must have (a fresh array).</summary>
    public int[] SampleShape => [Channels, Rows, Cols];

    /// <summary>Floats per sample: Channels·Rows·Cols.</summary>
    public int SampleSize => Channels * Rows * Cols;

    /// <summary>All images, [Count, Channels, Rows, Cols], normalized.</summary>
    public ReadOnlySpan<float> Images => _images;

    /// <summary>All labels, in [0, Classes).</summary>
    public ReadOnlySpan<int> Labels => _labels;

    /// <summary>Where the data was read from (a directory), or null for an in-memory dataset.</summary>
    public string? Source { get; private init; }

    /// <summary>What the images were normalized with, or null when built from normalized floats.</summary>
    public InputNormalization? Normalization { get; private init; }

    /// <summary>Sample <paramref name="index"/>'s image, [Channels, Rows, Cols].</summary>
    public ReadOnlySpan<float> Image(int index) => _images.AsSpan(CheckIndex(index) * SampleSize, SampleSize);

    /// <summary>Sample <paramref name="index"/>'s label.</summary>
    public int Label(int index) => _labels[CheckIndex(index)];

    /// <summary>
    /// Why a model <paramref name="model"/> that takes samples of <paramref name="inputShape"/> and
    /// has <paramref name="outputs"/> class outputs cannot learn this data (another number of values
    /// per sample, fewer outputs than classes), or null when it can.
    /// </summary>
    public string? MismatchWith(string model, ReadOnlySpan<int> inputShape, int outputs)
    {
        long size = 1;
        foreach (int d in inputShape) size *= d;
        if (size == SampleSize && outputs >= Classes) return null;
        string where = Source is null ? "the data" : $"the data in '{Source}'";
        return $"{where} has samples of {string.Join("×", SampleShape)} in {Classes} classes, but the model {model} takes " +
               $"{string.Join("×", inputShape.ToArray())} and has {outputs} outputs";
    }

    /// <summary>The normalized value of raw Fashion-MNIST pixel <paramref name="pixel"/>: (pixel/255 − Mean) / Std.</summary>
    public static float Normalize(byte pixel) => NormalizeTable[pixel];

    /// <summary>
    /// Builds a Fashion-MNIST-shaped dataset from raw pixels [count, rows, cols] (normalizing them) and labels [count].
    /// </summary>
    public static Dataset FromPixels(ReadOnlySpan<byte> pixels, ReadOnlySpan<byte> labels, int rows, int cols)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(rows);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(cols);
        if ((long)labels.Length * rows * cols != pixels.Length)
            throw new ArgumentException(
                $"pixels has {pixels.Length} bytes, expected {labels.Length} labels × {rows}×{cols} = {(long)labels.Length * rows * cols}",
                nameof(pixels));
        return new Dataset(NormalizeAll(pixels), labels.ToArray(), rows, cols);
    }

    /// <summary>
    /// Loads the training split (<paramref name="train"/> = true) or the test split of
    /// <paramref name="directory"/> with the data's default normalization (<see cref="DataSets.Create"/>).
    /// IDX (Fashion-MNIST): train-images-idx3-ubyte and train-labels-idx1-ubyte, or t10k-…, each
    /// gzip-compressed (name + ".gz", preferred when both exist) or raw. Safetensors
    /// (<see cref="DataDirectory"/>): the test split needs the training split too, for its classes
    /// and normalization.
    /// </summary>
    /// <exception cref="FileNotFoundException">A file is missing (the message names the directory and the names looked for).</exception>
    /// <exception cref="InvalidDataException">A file is malformed, the image and label counts differ, or a label is out of range.</exception>
    public static Dataset Load(string directory, bool train)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        if (DataDirectory.FormatOf(directory) == DataFormat.Idx)
            return Create(DataDirectory.Read(directory, train), InputNormalization.FashionMnist, ClassCount, directory);
        var sets = DataSets.Load(directory);
        return train ? sets.Train : sets.Test;
    }

    /// <summary>Normalizes <paramref name="split"/>; a label outside [0, <paramref name="classes"/>) is an error naming its file.</summary>
    internal static Dataset Create(DataSplit split, InputNormalization normalization, int classes, string? source)
    {
        int bad = split.IndexOfLabelOutside(classes);
        if (bad >= 0)
            throw new InvalidDataException($"{split.LabelsSource}: label {split.Labels[bad]} at index {bad} is not in [0, {classes})");
        return new Dataset(normalization.Apply(split), split.LabelsArray, split.Channels, split.Rows, split.Cols, classes)
        {
            Source = source,
            Normalization = normalization,
        };
    }

    /// <summary>
    /// Copies the samples named by <paramref name="indices"/> (in that order) into
    /// <paramref name="images"/> ([indices.Length, Channels, Rows, Cols], normalized) and
    /// <paramref name="labels"/> ([indices.Length]). The destinations may be longer than needed;
    /// only their prefixes are written. Allocates nothing.
    /// </summary>
    /// <exception cref="ArgumentException">A destination is too short.</exception>
    /// <exception cref="ArgumentOutOfRangeException">An index is not in [0, Count).</exception>
    public void Gather(ReadOnlySpan<int> indices, Span<float> images, Span<int> labels)
    {
        int size = SampleSize;
        if ((long)indices.Length * size > images.Length)
            throw new ArgumentException(
                $"images has room for {images.Length} floats, need {indices.Length} samples × {size} = {(long)indices.Length * size}",
                nameof(images));
        if (indices.Length > labels.Length)
            throw new ArgumentException($"labels has room for {labels.Length} labels, need {indices.Length}", nameof(labels));

        var source = _images.AsSpan();
        for (int i = 0; i < indices.Length; i++)
        {
            int s = indices[i];
            if ((uint)s >= (uint)_labels.Length)
                throw new ArgumentOutOfRangeException(nameof(indices), s,
                    $"indices[{i}] = {s} is not a sample of this dataset (Count = {Count})");
            source.Slice(s * size, size).CopyTo(images.Slice(i * size, size));
            labels[i] = _labels[s];
        }
    }

    /// <summary>
    /// The directory of the embedded Fashion-MNIST subset: the environment variable BNDIST_DATA if set;
    /// else data/fashion-mnist next to the executable (<see cref="AppContext.BaseDirectory"/>);
    /// else the first data/fashion-mnist holding t10k-labels-idx1-ubyte.gz found walking up from
    /// <see cref="AppContext.BaseDirectory"/>, then from the current directory.
    /// </summary>
    /// <exception cref="DirectoryNotFoundException">None was found (the message lists where it looked).</exception>
    public static string DefaultDirectory() =>
        FindDataDirectory(Environment.GetEnvironmentVariable(DataEnvironmentVariable),
                          AppContext.BaseDirectory, Directory.GetCurrentDirectory(), out var tried)
        ?? throw new DirectoryNotFoundException(
            $"Fashion-MNIST data not found: {DataEnvironmentVariable} is not set and no " +
            $"{Path.Combine(EmbeddedRelativePath, MarkerFile)} was found next to or above {string.Join(" or ", tried)}. " +
            $"Set {DataEnvironmentVariable} to a directory holding the IDX files.");

    /// <summary><see cref="DefaultDirectory"/>'s search, with its inputs as parameters (for tests).</summary>
    internal static string? FindDataDirectory(string? environment, string baseDirectory, string currentDirectory,
                                              out IReadOnlyList<string> searched)
    {
        searched = [baseDirectory, currentDirectory];
        if (!string.IsNullOrEmpty(environment))
            return environment;

        string beside = Path.Combine(baseDirectory, EmbeddedRelativePath);
        if (Directory.Exists(beside))
            return beside;

        foreach (string start in new[] { baseDirectory, currentDirectory })
        {
            for (var dir = new DirectoryInfo(Path.GetFullPath(start)); dir is not null; dir = dir.Parent)
            {
                string candidate = Path.Combine(dir.FullName, EmbeddedRelativePath);
                if (File.Exists(Path.Combine(candidate, MarkerFile)))
                    return candidate;
            }
        }
        return null;
    }

    private int CheckIndex(int index)
    {
        if ((uint)index >= (uint)_labels.Length)
            throw new ArgumentOutOfRangeException(nameof(index), index, $"not a sample of this dataset (Count = {Count})");
        return index;
    }

    private static int[] ToInts(byte[] labels)
    {
        ArgumentNullException.ThrowIfNull(labels);
        var result = new int[labels.Length];
        for (int i = 0; i < labels.Length; i++) result[i] = labels[i];
        return result;
    }

    private static float[] NormalizeAll(ReadOnlySpan<byte> pixels)
    {
        var table = NormalizeTable;
        var result = GC.AllocateUninitializedArray<float>(pixels.Length);
        for (int i = 0; i < pixels.Length; i++)
            result[i] = table[pixels[i]];
        return result;
    }

    private static float[] BuildNormalizeTable()
    {
        var table = new float[256];
        for (int p = 0; p < 256; p++)
            table[p] = (p / 255f - Mean) / Std;
        return table;
    }
}
