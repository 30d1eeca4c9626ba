using System.IO.Compression;
using BnDist.Core.Data;

namespace BnDist.Core.Tests.Data;

public class IdxReaderTests
{
    [Fact]
    public void EmbeddedTrainingSubset_Has10000LabelledImages()
    {
        var images = IdxReader.ReadImages(Embedded.File("train-images-idx3-ubyte.gz"));
        var labels = IdxReader.ReadLabels(Embedded.File("train-labels-idx1-ubyte.gz"));

        Assert.Equal(10000, images.Count);
        Assert.Equal(28, images.Rows);
        Assert.Equal(28, images.Cols);
        Assert.Equal(10000 * 28 * 28, images.Pixels.Length);
        Assert.Equal(10000, labels.Length);
        Assert.All(labels, l => Assert.InRange(l, 0, 9));
        Assert.Equal(9, labels[0]);                      // the famous first ankle boot
        Assert.Equal(10, labels.Distinct().Count());
    }

    [Fact]
    public void EmbeddedTestSet_Has10000LabelledImages()
    {
        var images = IdxReader.ReadImages(Embedded.File("t10k-images-idx3-ubyte.gz"));
        var labels = IdxReader.ReadLabels(Embedded.File("t10k-labels-idx1-ubyte.gz"));

        Assert.Equal((10000, 28, 28), (images.Count, images.Rows, images.Cols));
        Assert.Equal(10000, labels.Length);
        Assert.All(labels, l => Assert.InRange(l, 0, 9));
        Assert.Equal(9, labels[0]);
        Assert.Equal(1000, labels.Count(l => l == 3));   // the test set is exactly balanced
    }

    /// <summary>Checked only where the Debian package dataset-fashion-mnist is installed.</summary>
    [Fact]
    public void EmbeddedSubset_EqualsTheStartOfTheFullDataSet_WhenPresent()
    {
        string fullImages = Path.Combine(Embedded.DebianDirectory, "train-images-idx3-ubyte.gz");
        string fullLabels = Path.Combine(Embedded.DebianDirectory, "train-labels-idx1-ubyte.gz");
        if (!File.Exists(fullImages) || !File.Exists(fullLabels))
            return;

        var images = IdxReader.ReadImages(Embedded.File("train-images-idx3-ubyte.gz"));
        var labels = IdxReader.ReadLabels(Embedded.File("train-labels-idx1-ubyte.gz"));

        // Only the needed prefix of the full files is decompressed.
        var imagePrefix = ReadPrefix(fullImages, 16 + images.Pixels.Length);
        var labelPrefix = ReadPrefix(fullLabels, 8 + labels.Length);
        Assert.Equal(new byte[] { 0, 0, 8, 3, 0, 0, 0xea, 0x60, 0, 0, 0, 28, 0, 0, 0, 28 }, imagePrefix[..16]); // 60000 × 28×28
        Assert.True(imagePrefix.AsSpan(16).SequenceEqual(images.Pixels));
        Assert.True(labelPrefix.AsSpan(8).SequenceEqual(labels));

        foreach (string name in new[] { "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz" })
            Assert.True(File.ReadAllBytes(Path.Combine(Embedded.DebianDirectory, name))
                            .AsSpan().SequenceEqual(File.ReadAllBytes(Embedded.File(name))), name);
    }

    private static byte[] ReadPrefix(string gzPath, int length)
    {
        using var gz = new GZipStream(File.OpenRead(gzPath), CompressionMode.Decompress);
        var buffer = new byte[length];
        gz.ReadExactly(buffer);
        return buffer;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void RawAndGzipFiles_ReadAlike_WhateverTheirName(bool gzip)
    {
        using var dir = new TempDirectory();
        // Deliberately misleading names: detection is by content.
        string images = Idx.Write(dir.File(gzip ? "images.raw" : "images.gz"), Idx.Images(3, 2, 4), gzip);
        string labels = Idx.Write(dir.File(gzip ? "labels.raw" : "labels.gz"), Idx.Labels(1, 2, 0), gzip);

        var read = IdxReader.ReadImages(images);
        Assert.Equal((3, 2, 4), (read.Count, read.Rows, read.Cols));
        Assert.Equal(Idx.Images(3, 2, 4)[16..], read.Pixels);
        Assert.Equal(new byte[] { 1, 2, 0 }, IdxReader.ReadLabels(labels));
    }

    [Fact]
    public void EmptyFiles_AreValid()
    {
        using var dir = new TempDirectory();
        string images = Idx.Write(dir.File("i"), Idx.Images(0, 28, 28), gzip: false);
        string labels = Idx.Write(dir.File("l"), Idx.Labels(), gzip: true);
        Assert.Equal(0, IdxReader.ReadImages(images).Count);
        Assert.Empty(IdxReader.ReadLabels(labels));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void WrongMagic_IsRejected(bool gzip)
    {
        using var dir = new TempDirectory();
        string labelsFile = Idx.Write(dir.File("train-labels-idx1-ubyte"), Idx.Labels(1, 2, 3), gzip);
        string imagesFile = Idx.Write(dir.File("train-images-idx3-ubyte"), Idx.Images(2, 3, 3), gzip);

        var e = Assert.Throws<InvalidDataException>(() => IdxReader.ReadImages(labelsFile));
        Assert.StartsWith(labelsFile + ": bad magic 0x00000801 (a labels file), expected 0x00000803", e.Message);

        e = Assert.Throws<InvalidDataException>(() => IdxReader.ReadLabels(imagesFile));
        Assert.StartsWith(imagesFile + ": bad magic 0x00000803 (an images file), expected 0x00000801", e.Message);

        string text = dir.File("text");
        File.WriteAllText(text, "hello, world, this is not IDX");
        e = Assert.Throws<InvalidDataException>(() => IdxReader.ReadImages(text));
        Assert.Contains(text, e.Message);
        Assert.Contains("not an IDX file", e.Message);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void TruncatedPayload_IsRejected(bool gzip)
    {
        using var dir = new TempDirectory();
        string images = Idx.Write(dir.File("train-images-idx3-ubyte.gz"), Idx.Images(10, 28, 28)[..(16 + 123)], gzip);
        string labels = Idx.Write(dir.File("train-labels-idx1-ubyte.gz"), Idx.Labels(1, 2, 3, 4)[..10], gzip);

        var e = Assert.Throws<InvalidDataException>(() => IdxReader.ReadImages(images));
        Assert.Equal($"{images}: truncated: header says 10 images of 28×28 = 7840 bytes, found 123", e.Message);

        e = Assert.Throws<InvalidDataException>(() => IdxReader.ReadLabels(labels));
        Assert.Equal($"{labels}: truncated: header says 4 labels = 4 bytes, found 2", e.Message);
    }

    [Theory]
    [InlineData(false, 0)]
    [InlineData(false, 3)]
    [InlineData(false, 10)]
    [InlineData(true, 15)]
    public void TruncatedHeader_IsRejected(bool gzip, int length)
    {
        using var dir = new TempDirectory();
        string images = Idx.Write(dir.File("images"), Idx.Images(1, 2, 2)[..length], gzip);

        var e = Assert.Throws<InvalidDataException>(() => IdxReader.ReadImages(images));
        Assert.Equal($"{images}: truncated header: an IDX images file needs a 16-byte header, found {length} bytes", e.Message);

        string labels = Idx.Write(dir.File("labels"), Idx.Labels(1)[..Math.Min(length, 7)], gzip);
        e = Assert.Throws<InvalidDataException>(() => IdxReader.ReadLabels(labels));
        Assert.StartsWith($"{labels}: truncated header", e.Message);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void TrailingBytes_AreRejected(bool gzip)
    {
        using var dir = new TempDirectory();
        string images = Idx.Write(dir.File("images"), [.. Idx.Images(2, 2, 2), 0, 0, 0], gzip);
        string labels = Idx.Write(dir.File("labels"), [.. Idx.Labels(1, 2), 7], gzip);

        var e = Assert.Throws<InvalidDataException>(() => IdxReader.ReadImages(images));
        Assert.Equal($"{images}: 3 trailing bytes after the payload: header says 2 images of 2×2 = 8 bytes", e.Message);

        e = Assert.Throws<InvalidDataException>(() => IdxReader.ReadLabels(labels));
        Assert.Equal($"{labels}: 1 trailing byte after the payload: header says 2 labels = 2 bytes", e.Message);
    }

    [Fact]
    public void ZeroSizedImages_AreRejected()
    {
        using var dir = new TempDirectory();
        string images = Idx.Write(dir.File("images"), Idx.Images(0, 0, 28, headerCount: 5), gzip: false);
        var e = Assert.Throws<InvalidDataException>(() => IdxReader.ReadImages(images));
        Assert.Equal($"{images}: bad dimensions: header says 5 images of 0×28", e.Message);
    }

    [Fact]
    public void GarbageAfterGzipMagic_IsReportedAsCorruptGzip()
    {
        using var dir = new TempDirectory();
        string path = dir.File("train-images-idx3-ubyte.gz");
        File.WriteAllBytes(path, [0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x42, 0x13, 0x37, 0xee]);

        var e = Assert.Throws<InvalidDataException>(() => IdxReader.ReadImages(path));
        Assert.StartsWith(path + ": ", e.Message);
        Assert.Contains("corrupt gzip stream", e.Message);
    }

    [Fact]
    public void CorruptedGzipBody_IsRejected()
    {
        using var dir = new TempDirectory();
        var gz = Idx.Gzip(Idx.Images(50, 8, 8, pixel: i => (byte)(i * i % 251)));
        for (int i = 20; i < gz.Length - 12; i += 7)
            gz[i] ^= 0x5a;
        string path = dir.File("t10k-images-idx3-ubyte.gz");
        File.WriteAllBytes(path, gz);

        var e = Assert.Throws<InvalidDataException>(() => IdxReader.ReadImages(path));
        Assert.StartsWith(path + ": ", e.Message);
    }

    [Fact]
    public void CutGzipFile_IsRejected()
    {
        using var dir = new TempDirectory();
        var gz = Idx.Gzip(Idx.Images(50, 8, 8, pixel: i => (byte)(i * i % 251)));
        string path = dir.File("train-images-idx3-ubyte.gz");
        File.WriteAllBytes(path, gz[..(gz.Length / 2)]);

        // .NET's GZipStream just ends early on a cut stream; the length check catches it.
        var e = Assert.Throws<InvalidDataException>(() => IdxReader.ReadImages(path));
        Assert.StartsWith($"{path}: truncated: header says 50 images of 8×8 = 3200 bytes, found ", e.Message);
    }

    [Fact]
    public void GzipChecksumMismatch_IsReportedAsCorruptGzip()
    {
        using var dir = new TempDirectory();
        var gz = Idx.Gzip(Idx.Labels(1, 2, 3));
        gz[^8] ^= 0xff;   // the CRC-32 in the gzip trailer
        string path = dir.File("labels.gz");
        File.WriteAllBytes(path, gz);

        var e = Assert.Throws<InvalidDataException>(() => IdxReader.ReadLabels(path));
        Assert.StartsWith(path + ": corrupt gzip stream", e.Message);
    }

    [Fact]
    public void MissingFile_ThrowsFileNotFound()
    {
        using var dir = new TempDirectory();
        var e = Assert.Throws<FileNotFoundException>(() => IdxReader.ReadLabels(dir.File("nope")));
        Assert.Contains(dir.File("nope"), e.Message);
    }
}
