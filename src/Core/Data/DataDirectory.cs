namespace BnDist.Core.Data;

/// <summary>
/// What <c>--data DIR</c> may name (docs/data.md): a directory of Fashion-MNIST's four IDX files
/// (<c>train-images-idx3-ubyte</c>, <c>train-labels-idx1-ubyte</c>, <c>t10k-…</c>, each raw or
/// gzip'd) or a directory holding <see cref="TrainFile"/> and <see cref="TestFile"/>. The
/// safetensors files decide: a directory with either of them is a safetensors data set.
/// </summary>
public static class DataDirectory
{
    /// <summary>The training split of a safetensors data set.</summary>
    public const string TrainFile = "train.safetensors";

    /// <summary>The test split of a safetensors data set.</summary>
    public const string TestFile = "test.safetensors";

    /// <summary>The format of <paramref name="directory"/>: safetensors when it holds <see cref="TrainFile"/> or <see cref="TestFile"/>, else IDX.</summary>
    public static DataFormat FormatOf(string directory) =>
        File.Exists(Path.Combine(directory, TrainFile)) || File.Exists(Path.Combine(directory, TestFile)) ? DataFormat.SafeTensors : DataFormat.Idx;

    /// <summary>Reads the training (<paramref name="train"/>) or the test split of <paramref name="directory"/>, not normalized.</summary>
    /// <exception cref="FileNotFoundException">A file is missing (the message names the directory and what was looked for).</exception>
    /// <exception cref="InvalidDataException">A file is malformed (the message names it and, for safetensors, the tensor).</exception>
    public static DataSplit Read(string directory, bool train)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        if (FormatOf(directory) == DataFormat.Idx) return ReadIdx(directory, train);
        string name = train ? TrainFile : TestFile;
        string path = Path.Combine(directory, name);
        if (!File.Exists(path))
            throw new FileNotFoundException($"{(train ? "training" : "test")} split not found in '{directory}': looked for {name} " +
                                            $"(a safetensors data set has {TrainFile} and {TestFile})", path);
        return SafeTensorsSplit.Read(path);
    }

    private static DataSplit ReadIdx(string directory, bool train)
    {
        string prefix = train ? "train" : "t10k";
        string split = train ? "training" : "test";
        string imagesPath = Find(directory, $"{prefix}-images-idx3-ubyte", $"{split} images");
        string labelsPath = Find(directory, $"{prefix}-labels-idx1-ubyte", $"{split} labels");
        var images = IdxReader.ReadImages(imagesPath);
        var labels = IdxReader.ReadLabels(labelsPath);
        if (images.Count != labels.Length)
            throw new InvalidDataException(
                $"Fashion-MNIST {split} set in '{directory}': {imagesPath} has {images.Count} images " +
                $"but {labelsPath} has {labels.Length} labels");
        int[] ints = new int[labels.Length];
        for (int i = 0; i < ints.Length; i++) ints[i] = labels[i];
        return new DataSplit(DataFormat.Idx, imagesPath, labelsPath, 1, images.Rows, images.Cols, images.Pixels, null, ints);
    }

    private static string Find(string directory, string name, string what)
    {
        string gz = Path.Combine(directory, name + ".gz");
        if (File.Exists(gz))
            return gz;
        string raw = Path.Combine(directory, name);
        if (File.Exists(raw))
            return raw;
        string why = Directory.Exists(directory) ? "" : " (the directory does not exist)";
        throw new FileNotFoundException(
            $"Fashion-MNIST {what} not found in '{directory}'{why}: looked for {name}.gz and {name} " +
            $"(or, for a data set of safetensors files, {TrainFile} and {TestFile})", gz);
    }
}
