using BnDist.Core.Data;

namespace BnDist.Core.Tests.Data;

public class DatasetTests
{
    [Fact]
    public void Normalization_IsScaleThenStandardize()
    {
        var ds = Dataset.FromPixels([0, 255, 128, 73], [0], rows: 2, cols: 2);
        float[] expected = [(0f - 0.2860f) / 0.3530f, (1f - 0.2860f) / 0.3530f, (128 / 255f - 0.2860f) / 0.3530f, (73 / 255f - 0.2860f) / 0.3530f];
        Assert.Equal(expected.Length, ds.Images.Length);
        for (int i = 0; i < expected.Length; i++)
            Assert.Equal(expected[i], ds.Images[i], 6);
        Assert.Equal(-0.810198f, Dataset.Normalize(0), 5);
        Assert.Equal(2.022663f, Dataset.Normalize(255), 5);
    }

    [Fact]
    public void EmbeddedTestSet_LoadsNormalizedNchw()
    {
        var ds = Embedded.Test;
        Assert.Equal(10000, ds.Count);
        Assert.Equal((1, 28, 28, 10), (ds.Channels, ds.Rows, ds.Cols, ds.Classes));
        Assert.Equal(28 * 28, ds.SampleSize);
        Assert.Equal(10000 * 28 * 28, ds.Images.Length);
        Assert.Equal(Embedded.Directory, ds.Source);
        Assert.Equal(9, ds.Label(0));
        Assert.Equal((0f - 0.2860f) / 0.3530f, ds.Image(0)[0]);   // the corner pixel is background

        var raw = IdxReader.ReadImages(Embedded.File("t10k-images-idx3-ubyte.gz"));
        for (int i = 0; i < raw.Pixels.Length; i += 997)
            Assert.Equal(Dataset.Normalize(raw.Pixels[i]), ds.Images[i]);

        // Over the test set the normalized pixels have mean ≈ 0 and sd ≈ 1.
        double sum = 0, sumSq = 0;
        foreach (float x in ds.Images) { sum += x; sumSq += (double)x * x; }
        double mean = sum / ds.Images.Length, sd = Math.Sqrt(sumSq / ds.Images.Length - mean * mean);
        Assert.InRange(mean, -0.02, 0.02);
        Assert.InRange(sd, 0.97, 1.03);
    }

    [Fact]
    public void EmbeddedTrainingSubset_Loads()
    {
        var ds = Dataset.Load(Embedded.Directory, train: true);
        Assert.Equal(10000, ds.Count);
        Assert.Equal(9, ds.Label(0));
    }

    [Fact]
    public void Gather_CopiesTheNamedSamplesInOrder_WithoutAllocating()
    {
        var ds = Dataset.FromPixels(Enumerable.Range(0, 5 * 4).Select(i => (byte)(i * 10)).ToArray(), [4, 3, 2, 1, 0], 2, 2);
        int[] indices = [3, 0, 3];
        var images = new float[4 * 4];
        var labels = new int[4];
        Array.Fill(images, float.NaN);
        Array.Fill(labels, -1);

        ds.Gather(indices, images, labels);
        Assert.Equal([1, 4, 1, -1], labels);
        Assert.True(images.AsSpan(0, 4).SequenceEqual(ds.Image(3)));
        Assert.True(images.AsSpan(4, 4).SequenceEqual(ds.Image(0)));
        Assert.True(images.AsSpan(8, 4).SequenceEqual(ds.Image(3)));
        Assert.All(images[12..], x => Assert.True(float.IsNaN(x)));   // beyond the batch: untouched

        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 100; i++)
            ds.Gather(indices, images, labels);
        Assert.Equal(before, GC.GetAllocatedBytesForCurrentThread());
    }

    [Fact]
    public void Gather_ChecksIndicesAndDestinations()
    {
        var ds = Dataset.FromPixels(new byte[3 * 4], [0, 1, 2], 2, 2);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => ds.Gather([0, 3], new float[8], new int[2]));
        Assert.Equal("indices", e.ParamName);
        Assert.Throws<ArgumentOutOfRangeException>(() => ds.Gather([-1], new float[4], new int[1]));
        Assert.Equal("images", Assert.Throws<ArgumentException>(() => ds.Gather([0, 1], new float[7], new int[2])).ParamName);
        Assert.Equal("labels", Assert.Throws<ArgumentException>(() => ds.Gather([0, 1], new float[8], new int[1])).ParamName);
        ds.Gather([], Span<float>.Empty, Span<int>.Empty);
    }

    [Fact]
    public void Load_ReadsRawFilesToo()
    {
        using var dir = new TempDirectory();
        Idx.Write(dir.File("t10k-images-idx3-ubyte"), Idx.Images(3, 2, 2), gzip: false);
        Idx.Write(dir.File("t10k-labels-idx1-ubyte"), Idx.Labels(7, 8, 9), gzip: false);
        var ds = Dataset.Load(dir.Path, train: false);
        Assert.Equal((3, 2, 2), (ds.Count, ds.Rows, ds.Cols));
        Assert.Equal(8, ds.Label(1));
    }

    [Fact]
    public void Load_MissingFile_NamesTheDirectoryAndTheNamesLookedFor()
    {
        using var dir = new TempDirectory();
        Idx.Write(dir.File("train-images-idx3-ubyte.gz"), Idx.Images(1, 2, 2), gzip: true);

        var e = Assert.Throws<FileNotFoundException>(() => Dataset.Load(dir.Path, train: true));
        Assert.Contains(dir.Path, e.Message);
        Assert.Contains("training labels", e.Message);
        Assert.Contains("looked for train-labels-idx1-ubyte.gz and train-labels-idx1-ubyte", e.Message);

        e = Assert.Throws<FileNotFoundException>(() => Dataset.Load(dir.Path, train: false));
        Assert.Contains("t10k-images-idx3-ubyte.gz and t10k-images-idx3-ubyte", e.Message);

        string missing = Path.Combine(dir.Path, "no-such-dir");
        e = Assert.Throws<FileNotFoundException>(() => Dataset.Load(missing, train: false));
        Assert.Contains(missing, e.Message);
        Assert.Contains("does not exist", e.Message);
    }

    [Fact]
    public void Load_CountMismatch_NamesBothFiles()
    {
        using var dir = new TempDirectory();
        string images = Idx.Write(dir.File("train-images-idx3-ubyte.gz"), Idx.Images(3, 2, 2), gzip: true);
        string labels = Idx.Write(dir.File("train-labels-idx1-ubyte.gz"), Idx.Labels(1, 2, 3, 4), gzip: true);

        var e = Assert.Throws<InvalidDataException>(() => Dataset.Load(dir.Path, train: true));
        Assert.Contains($"{images} has 3 images", e.Message);
        Assert.Contains($"{labels} has 4 labels", e.Message);
    }

    [Fact]
    public void Load_LabelOutOfRange_NamesTheFile()
    {
        using var dir = new TempDirectory();
        Idx.Write(dir.File("t10k-images-idx3-ubyte.gz"), Idx.Images(3, 2, 2), gzip: true);
        string labels = Idx.Write(dir.File("t10k-labels-idx1-ubyte.gz"), Idx.Labels(1, 10, 3), gzip: true);

        var e = Assert.Throws<InvalidDataException>(() => Dataset.Load(dir.Path, train: false));
        Assert.Equal($"{labels}: label 10 at index 1 is not in [0, 10)", e.Message);
    }

    [Fact]
    public void Load_CorruptFile_NamesIt()
    {
        using var dir = new TempDirectory();
        string images = Idx.Write(dir.File("t10k-images-idx3-ubyte.gz"), Idx.Images(3, 2, 2)[..20], gzip: true);
        Idx.Write(dir.File("t10k-labels-idx1-ubyte.gz"), Idx.Labels(1, 2, 3), gzip: true);

        var e = Assert.Throws<InvalidDataException>(() => Dataset.Load(dir.Path, train: false));
        Assert.StartsWith(images + ": truncated", e.Message);
    }

    [Fact]
    public void Constructor_ValidatesShapesAndLabels()
    {
        Assert.Throws<ArgumentException>(() => new Dataset(new float[7], [0, 1], 2, 2));
        Assert.Throws<ArgumentException>(() => new Dataset(new float[8], [0, 10], 2, 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Dataset(new float[8], [0, 1], 0, 2));
        Assert.Equal(2, new Dataset(new float[8], [0, 9], 2, 2).Count);
    }

    [Fact]
    public void EmbeddedData_IsCopiedIntoTheOutputOfAReferencingProject()
    {
        foreach (string name in new[] { "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "LICENSE", "README.md" })
            Assert.True(File.Exists(Embedded.File(name)), $"{Embedded.File(name)} is missing from the test output");
    }

    [Fact]
    public void DefaultDirectory_FindsTheEmbeddedData()
    {
        if (Environment.GetEnvironmentVariable(Dataset.DataEnvironmentVariable) is { Length: > 0 })
            return;   // someone pointed it elsewhere on purpose
        string dir = Dataset.DefaultDirectory();
        Assert.Equal(Path.GetFullPath(Embedded.Directory), Path.GetFullPath(dir));
    }

    [Fact]
    public void FindDataDirectory_SearchOrder()
    {
        using var root = new TempDirectory();
        string repo = root.File("repo");
        string data = Path.Combine(repo, "data", "fashion-mnist");
        string bin = Path.Combine(repo, "src", "App", "bin", "Debug");
        string elsewhere = root.File("elsewhere");
        Directory.CreateDirectory(data);
        Directory.CreateDirectory(bin);
        Directory.CreateDirectory(elsewhere);

        // The environment variable wins, even if it names nothing.
        Assert.Equal("/my/data", Dataset.FindDataDirectory("/my/data", bin, elsewhere, out _));

        // No marker file yet: the walk up finds nothing.
        Assert.Null(Dataset.FindDataDirectory(null, bin, elsewhere, out var searched));
        Assert.Equal([bin, elsewhere], searched);

        // Walking up from the executable's directory ...
        File.WriteAllBytes(Path.Combine(data, "t10k-labels-idx1-ubyte.gz"), []);
        Assert.Equal(data, Dataset.FindDataDirectory("", bin, elsewhere, out _));
        // ... or from the current directory.
        Assert.Equal(data, Dataset.FindDataDirectory(null, elsewhere, Path.Combine(repo, "src"), out _));

        // data/fashion-mnist beside the executable comes before the walk.
        string beside = Path.Combine(bin, "data", "fashion-mnist");
        Directory.CreateDirectory(beside);
        Assert.Equal(beside, Dataset.FindDataDirectory(null, bin, elsewhere, out _));
    }
}
