namespace BnDist.Core.Data;

/// <summary>
/// The training and test sets of a run, normalized alike (docs/data.md).
/// </summary>
/// <param name="Normalization">What both were normalized with.</param>
/// <param name="NormalizationOrigin">Where it came from, for the line a command prints: "--normalize",
/// "computed from the training set", "Fashion-MNIST's", or "none: float32 data taken as it is".</param>
public sealed record DataSets(Dataset Train, Dataset Test, InputNormalization Normalization, string NormalizationOrigin)
{
    /// <summary>Reads and normalizes both splits of <paramref name="directory"/> (see <see cref="Create"/>).</summary>
    /// <exception cref="FileNotFoundException">A file is missing.</exception>
    /// <exception cref="InvalidDataException">A file is malformed or the splits disagree (the message names the file).</exception>
    /// <exception cref="ArgumentException"><paramref name="normalize"/> is malformed or does not fit the data's channels ("--normalize: …").</exception>
    public static DataSets Load(string directory, string normalize = "") =>
        Create(DataDirectory.Read(directory, train: true), DataDirectory.Read(directory, train: false), normalize, directory);

    /// <summary>
    /// Normalizes <paramref name="train"/> and <paramref name="test"/> with one normalization:
    /// <paramref name="normalize"/> (<see cref="InputNormalization.Parse"/>) when not empty; else
    /// Fashion-MNIST's for IDX data, the training set's statistics for uint8 safetensors
    /// (<see cref="InputNormalization.Compute"/>), and none for float32.
    /// </summary>
    /// <remarks>
    /// The classes: IDX data has Fashion-MNIST's 10; a safetensors training file's metadata
    /// <c>classes</c> when it has one; else 1 + its largest label. A label of either split outside
    /// [0, classes) is an error naming its file, and so is a test split whose images differ from the
    /// training split's in shape or element type.
    /// </remarks>
    public static DataSets Create(DataSplit train, DataSplit test, string normalize, string? source)
    {
        int classes = Check(train, test);
        InputNormalization normalization;
        string origin;
        if (!string.IsNullOrWhiteSpace(normalize))
            (normalization, origin) = (InputNormalization.Parse(normalize).ForChannels(train.Channels, "data"), "--normalize");
        else if (train.Format == DataFormat.Idx)
            (normalization, origin) = (InputNormalization.FashionMnist, "Fashion-MNIST's");
        else if (train.IsFloat)
            (normalization, origin) = (InputNormalization.Identity(train.Channels), "none: float32 data taken as it is");
        else
            (normalization, origin) = (InputNormalization.Compute(train), "computed from the training set");

        return new DataSets(Dataset.Create(train, normalization, classes, source), Dataset.Create(test, normalization, classes, source),
            normalization, origin);
    }

    /// <summary>
    /// Checks that <paramref name="train"/> and <paramref name="test"/> make a data set (see
    /// <see cref="Create"/>'s remarks) and returns its number of classes.
    /// </summary>
    /// <exception cref="InvalidDataException">They do not (the message names the file).</exception>
    public static int Check(DataSplit train, DataSplit test)
    {
        ArgumentNullException.ThrowIfNull(train);
        ArgumentNullException.ThrowIfNull(test);
        if (train.Count == 0) throw new InvalidDataException($"{train.ImagesSource}: the training split holds no samples");
        if (!test.SampleShape.AsSpan().SequenceEqual(train.SampleShape) || test.IsFloat != train.IsFloat)
            throw new InvalidDataException($"{test.ImagesSource}: {test.ElementType} images of {Shape(test.SampleShape)}, " +
                                           $"but the training split's ({train.ImagesSource}) are {train.ElementType} of {Shape(train.SampleShape)}");

        int classes = ClassesOf(train);
        string rule = train.Format == DataFormat.Idx ? "" : train.DeclaredClasses is null
            ? " (the classes are 1 + the largest training label)"
            : $" (the training file's metadata {SafeTensorsSplit.ClassesKey})";
        if (test.DeclaredClasses is { } declared && declared != classes)
            throw new InvalidDataException($"{test.ImagesSource}: metadata {SafeTensorsSplit.ClassesKey} is {declared}, the training split has {classes} classes{rule}");
        CheckLabels(train, classes, rule);
        CheckLabels(test, classes, rule);
        return classes;
    }

    /// <summary>The number of classes of a training split (see <see cref="Create"/>'s remarks).</summary>
    public static int ClassesOf(DataSplit train)
    {
        if (train.Format == DataFormat.Idx) return Dataset.ClassCount;
        if (train.DeclaredClasses is { } declared) return declared;
        int max = 0;
        foreach (int label in train.Labels) max = Math.Max(max, label);
        return max + 1;
    }

    private static void CheckLabels(DataSplit split, int classes, string rule)
    {
        int bad = split.IndexOfLabelOutside(classes);
        if (bad >= 0)
            throw new InvalidDataException($"{split.LabelsSource}: label {split.Labels[bad]} at index {bad} is not in [0, {classes}){rule}");
    }

    private static string Shape(int[] shape) => string.Join("×", shape);
}
