namespace BnDist.Core.Data;

/// <summary>Where a data set's splits come from (docs/data.md).</summary>
public enum DataFormat
{
    /// <summary>Fashion-MNIST's four IDX files: 1×28×28 uint8 images, 10 classes, fixed normalization.</summary>
    Idx,

    /// <summary><c>train.safetensors</c> and <c>test.safetensors</c>: uint8 or float32 images of any shape, int labels.</summary>
    SafeTensors,
}

/// <summary>
/// One split of a data set as its files hold it, before normalization: <see cref="Count"/>
/// images in NCHW order, either uint8 pixels (<see cref="Pixels"/>) or float32 values
/// (<see cref="Values"/>), and their integer labels. <see cref="DataSets.Create"/> turns a
/// training and a test split into <see cref="Dataset"/>s; a worker reads its splits before it
/// joins a run and normalizes them once the run's configuration has arrived.
/// </summary>
/// <remarks>Immutable; the arrays are owned and never written.</remarks>
public sealed class DataSplit
{
    private readonly byte[]? _pixels;
    private readonly float[]? _values;
    private readonly int[] _labels;

    /// <exception cref="ArgumentException">Not exactly one of pixels and values, or a length that does not match the shape.</exception>
    public DataSplit(DataFormat format, string imagesSource, string labelsSource, int channels, int rows, int cols,
        byte[]? pixels, float[]? values, int[] labels, int? declaredClasses = null)
    {
        ArgumentNullException.ThrowIfNull(labels);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(channels);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(rows);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(cols);
        if ((pixels is null) == (values is null)) throw new ArgumentException("give either uint8 pixels or float32 values");
        long expected = (long)labels.Length * channels * rows * cols, actual = pixels?.LongLength ?? values!.LongLength;
        if (expected != actual)
            throw new ArgumentException($"{imagesSource}: {actual} values, expected {labels.Length} samples × {channels}×{rows}×{cols} = {expected}");
        (Format, ImagesSource, LabelsSource, Channels, Rows, Cols) = (format, imagesSource, labelsSource, channels, rows, cols);
        (_pixels, _values, _labels, DeclaredClasses) = (pixels, values, labels, declaredClasses);
    }

    public DataFormat Format { get; }

    /// <summary>Names the images in messages: the IDX file, or "FILE: tensor images".</summary>
    public string ImagesSource { get; }

    /// <summary>Names the labels in messages: the IDX file, or "FILE: tensor labels".</summary>
    public string LabelsSource { get; }

    public int Count => _labels.Length;

    public int Channels { get; }

    public int Rows { get; }

    public int Cols { get; }

    /// <summary>[Channels, Rows, Cols].</summary>
    public int[] SampleShape => [Channels, Rows, Cols];

    /// <summary>True for float32 values, false for uint8 pixels.</summary>
    public bool IsFloat => _values is not null;

    /// <summary>The uint8 pixels, NCHW (empty for float32 data).</summary>
    public ReadOnlySpan<byte> Pixels => _pixels;

    /// <summary>The float32 values, NCHW (empty for uint8 data).</summary>
    public ReadOnlySpan<float> Values => _values;

    public ReadOnlySpan<int> Labels => _labels;

    /// <summary>The number of classes the file declares (safetensors metadata <c>classes</c>), or null.</summary>
    public int? DeclaredClasses { get; }

    internal float[]? ValuesArray => _values;

    internal int[] LabelsArray => _labels;

    /// <summary>"uint8" or "float32".</summary>
    internal string ElementType => IsFloat ? "float32" : "uint8";

    /// <summary>The index of the first label outside [0, <paramref name="classes"/>), or −1.</summary>
    internal int IndexOfLabelOutside(int classes) => _labels.AsSpan().IndexOfAnyExceptInRange(0, classes - 1);
}
