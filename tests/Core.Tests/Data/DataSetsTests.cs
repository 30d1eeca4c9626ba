using BnDist.Core.Data;

namespace BnDist.Core.Tests.Data;

/// <summary>A directory's two splits made into data sets: the format, the classes, the normalization.</summary>
public sealed class DataSetsTests
{
    [Fact]
    public void A_safetensors_directory_loads_with_its_shape_and_classes_from_the_data()
    {
        using var dir = DataFiles.Directory(train: 12, test: 5, channels: 3, rows: 6, cols: 7, classes: 4);
        Assert.Equal(DataFormat.SafeTensors, DataDirectory.FormatOf(dir.Path));
        var data = DataSets.Load(dir.Path);
        Assert.Equal((12, 5), (data.Train.Count, data.Test.Count));
        Assert.Equal([3, 6, 7], data.Train.SampleShape);
        Assert.Equal(3 * 6 * 7, data.Train.SampleSize);
        Assert.Equal((4, 4), (data.Train.Classes, data.Test.Classes));   // 1 + the largest training label
        Assert.Equal(dir.Path, data.Test.Source);
        Assert.Equal("computed from the training set", data.NormalizationOrigin);

        // Dataset.Load keeps working, for either split.
        Assert.Equal(data.Test.Images.ToArray(), Dataset.Load(dir.Path, train: false).Images.ToArray());
        Assert.Equal(4, Dataset.Load(dir.Path, train: true).Classes);
    }

    [Fact]
    public void An_IDX_directory_is_Fashion_MNIST_with_its_constants()
    {
        using var dir = new TempDirectory();
        Idx.Write(dir.File("train-images-idx3-ubyte"), Idx.Images(4, 3, 3), gzip: false);
        Idx.Write(dir.File("train-labels-idx1-ubyte"), Idx.Labels(1, 2, 3, 1), gzip: false);
        Idx.Write(dir.File("t10k-images-idx3-ubyte.gz"), Idx.Images(2, 3, 3), gzip: true);
        Idx.Write(dir.File("t10k-labels-idx1-ubyte.gz"), Idx.Labels(9, 0), gzip: true);
        Assert.Equal(DataFormat.Idx, DataDirectory.FormatOf(dir.Path));
        var data = DataSets.Load(dir.Path);
        Assert.Equal((10, 1), (data.Train.Classes, data.Train.Channels));   // not 1 + 3: IDX data is Fashion-MNIST
        Assert.Same(InputNormalization.FashionMnist, data.Normalization);
        Assert.Equal(Dataset.Load(dir.Path, train: true).Images.ToArray(), data.Train.Images.ToArray());
        var raw = IdxReader.ReadImages(dir.File("train-images-idx3-ubyte"));
        for (int i = 0; i < raw.Pixels.Length; i++)
            Assert.Equal(BitConverter.SingleToInt32Bits(Dataset.Normalize(raw.Pixels[i])), BitConverter.SingleToInt32Bits(data.Train.Images[i]));

        // --normalize with Fashion-MNIST's own numbers gives the same bits.
        var given = DataSets.Load(dir.Path, "0.2860,0.3530");
        Assert.Equal("--normalize", given.NormalizationOrigin);
        Assert.True(given.Train.Images.SequenceEqual(data.Train.Images));
    }

    [Fact]
    public void The_metadata_classes_override_the_largest_label_and_bound_it()
    {
        using var dir = new TempDirectory();
        DataFiles.WriteU8(dir.File("train.safetensors"), [3, 1, 5, 5], DataFiles.Pixels(75), [0, 1, 2], ("classes", "10"));
        DataFiles.WriteU8(dir.File("test.safetensors"), [2, 1, 5, 5], DataFiles.Pixels(50), [9, 0]);
        Assert.Equal(10, DataSets.Load(dir.Path).Test.Classes);

        DataFiles.WriteU8(dir.File("train.safetensors"), [3, 1, 5, 5], DataFiles.Pixels(75), [0, 1, 12], ("classes", "10"));
        var e = Assert.Throws<InvalidDataException>(() => DataSets.Load(dir.Path));
        Assert.Equal($"{dir.File("train.safetensors")}: tensor labels: label 12 at index 2 is not in [0, 10) (the training file's metadata classes)", e.Message);
    }

    [Fact]
    public void A_test_label_the_training_set_does_not_have_is_an_error_naming_the_test_file()
    {
        using var dir = new TempDirectory();
        DataFiles.WriteU8(dir.File("train.safetensors"), [3, 1, 5, 5], DataFiles.Pixels(75), [0, 1, 2]);
        DataFiles.WriteU8(dir.File("test.safetensors"), [2, 1, 5, 5], DataFiles.Pixels(50), [1, 3]);
        var e = Assert.Throws<InvalidDataException>(() => DataSets.Load(dir.Path));
        Assert.Equal($"{dir.File("test.safetensors")}: tensor labels: label 3 at index 1 is not in [0, 3) (the classes are 1 + the largest training label)",
            e.Message);
    }

    [Fact]
    public void Splits_of_different_shapes_or_element_types_are_refused_naming_the_test_file()
    {
        using var dir = new TempDirectory();
        DataFiles.WriteU8(dir.File("train.safetensors"), [2, 3, 5, 5], DataFiles.Pixels(150), [0, 1]);
        DataFiles.WriteU8(dir.File("test.safetensors"), [2, 1, 5, 5], DataFiles.Pixels(50), [0, 1]);
        var e = Assert.Throws<InvalidDataException>(() => DataSets.Load(dir.Path));
        Assert.StartsWith($"{dir.File("test.safetensors")}: tensor images: uint8 images of 1×5×5, but the training split's", e.Message);

        DataFiles.WriteF32(dir.File("test.safetensors"), [2, 3, 5, 5], new float[150], [0, 1]);
        e = Assert.Throws<InvalidDataException>(() => DataSets.Load(dir.Path));
        Assert.Contains("float32 images of 3×5×5, but the training split's", e.Message);
    }

    [Fact]
    public void A_missing_split_names_the_file_looked_for_and_a_directory_of_neither_format_names_both()
    {
        using var dir = new TempDirectory();
        DataFiles.WriteU8(dir.File("train.safetensors"), [2, 1, 5, 5], DataFiles.Pixels(50), [0, 1]);
        var e = Assert.Throws<FileNotFoundException>(() => DataSets.Load(dir.Path));
        Assert.Contains($"test split not found in '{dir.Path}': looked for test.safetensors", e.Message);

        using var empty = new TempDirectory();
        e = Assert.Throws<FileNotFoundException>(() => DataSets.Load(empty.Path));
        Assert.Contains("looked for train-images-idx3-ubyte.gz and train-images-idx3-ubyte (or, for a data set of safetensors files, " +
                        "train.safetensors and test.safetensors)", e.Message);
    }

    [Fact]
    public void Normalization_computed_from_uint8_training_data_is_the_two_pass_float64_statistics_of_each_channel()
    {
        const int n = 9, c = 3, h = 5, w = 6, plane = h * w;
        using var dir = new TempDirectory();
        var rng = new Random(3);
        byte[] pixels = new byte[n * c * plane];
        for (int i = 0; i < pixels.Length; i++) pixels[i] = (byte)(rng.Next(256) / (1 + i / plane % c));   // channels of different spread
        DataFiles.WriteU8(dir.File("train.safetensors"), [n, c, h, w], pixels, DataFiles.Labels(n, 3));
        DataFiles.WriteU8(dir.File("test.safetensors"), [1, c, h, w], pixels[..(c * plane)], [2]);
        var data = DataSets.Load(dir.Path);

        for (int ch = 0; ch < c; ch++)
        {
            var values = Enumerable.Range(0, n).SelectMany(s => pixels.Skip((s * c + ch) * plane).Take(plane)).Select(p => p / 255.0).ToList();
            double mean = values.Sum() / values.Count;
            double std = Math.Sqrt(values.Sum(v => (v - mean) * (v - mean)) / values.Count);
            Assert.Equal(mean, data.Normalization.Mean[ch], 1e-14);
            Assert.Equal(std, data.Normalization.Std[ch], 1e-14);
            // Applied as torchvision applies it: float32 (p/255 − mean)/std.
            float m = (float)data.Normalization.Mean[ch], sd = (float)data.Normalization.Std[ch];
            for (int s = 0; s < n; s++)
                for (int i = 0; i < plane; i++)
                    Assert.Equal((pixels[(s * c + ch) * plane + i] / 255f - m) / sd, data.Train.Images[(s * c + ch) * plane + i]);
        }
        // The test split is normalized with the training set's numbers.
        Assert.True(data.Test.Image(0).SequenceEqual(data.Train.Image(0)));
        Assert.Matches(@"^mean \d\.\d{4},\d\.\d{4},\d\.\d{4} std \d\.\d{4},\d\.\d{4},\d\.\d{4}$", data.Normalization.ToString());
    }

    [Fact]
    public void A_constant_channel_is_only_centred()
    {
        var split = new DataSplit(DataFormat.SafeTensors, "x", "y", 1, 1, 2, [7, 7, 7, 7], null, [0, 1]);
        var n = InputNormalization.Compute(split);
        Assert.Equal((7 / 255.0, 1.0), (n.Mean[0], n.Std[0]));
    }

    [Fact]
    public void Float32_data_is_taken_as_it_is_unless_normalize_is_given()
    {
        using var dir = new TempDirectory();
        float[] values = Enumerable.Range(0, 2 * 2 * 5 * 5).Select(i => MathF.Sin(i) * 3).ToArray();
        DataFiles.WriteF32(dir.File("train.safetensors"), [2, 2, 5, 5], values, [0, 1], ("layout", "NCHW"));   // 2 channels: the shape does not say
        DataFiles.WriteF32(dir.File("test.safetensors"), [2, 2, 5, 5], values, [1, 0], ("layout", "NCHW"));
        var data = DataSets.Load(dir.Path);
        Assert.True(data.Normalization.IsIdentity);
        Assert.Equal(values, data.Train.Images.ToArray());

        data = DataSets.Load(dir.Path, "1,2,-1,0.5");
        for (int i = 0; i < values.Length; i++)
        {
            int ch = i / 25 % 2;
            Assert.Equal(ch == 0 ? (values[i] - 1f) / 2f : (values[i] + 1f) / 0.5f, data.Train.Images[i]);
        }
    }

    [Fact]
    public void One_normalize_pair_serves_every_channel_and_another_count_is_an_error()
    {
        using var dir = DataFiles.Directory(train: 4, test: 2, channels: 3, rows: 5, cols: 5, classes: 2);
        var one = DataSets.Load(dir.Path, "0.5,0.25");
        Assert.Equal([0.5, 0.5, 0.5], one.Normalization.Mean);
        Assert.Equal([0.25, 0.25, 0.25], one.Normalization.Std);
        Assert.Equal(one.Train.Images.ToArray(), DataSets.Load(dir.Path, "0.5,0.25,0.5,0.25,0.5,0.25").Train.Images.ToArray());

        var e = Assert.Throws<ArgumentException>(() => DataSets.Load(dir.Path, "0.5,0.25,0.4,0.2"));
        Assert.Equal("--normalize: 2 MEAN,STD pairs for data of 3 channels (give one pair per channel, or one pair for all)", e.Message);
    }

    [Theory]
    [InlineData("0.5", "--normalize: 1 numbers do not make MEAN,STD pairs")]
    [InlineData("0.5,0.2,0.1", "--normalize: 3 numbers do not make MEAN,STD pairs")]
    [InlineData("mean,std", "--normalize: expected MEAN,STD[,MEAN,STD…] (one pair per channel, or one pair for all), got 'mean,std'")]
    [InlineData("0.5,", "--normalize: expected MEAN,STD")]
    [InlineData("0.5,0", "--normalize: std 0 of channel 0 must be a number > 0")]
    [InlineData("0.5,0.2,0.5,-1", "--normalize: std -1 of channel 1 must be a number > 0")]
    public void A_malformed_normalize_is_one_line_naming_the_option(string spec, string expected)
    {
        var e = Assert.Throws<ArgumentException>(() => InputNormalization.Parse(spec));
        Assert.StartsWith(expected, e.Message);
        Assert.Equal(spec, InputNormalization.Canonical(spec));   // left as given, for Validate to report
    }

    [Fact]
    public void A_normalize_spec_round_trips_exactly()
    {
        var n = InputNormalization.Parse(" 0.4914, 0.2470 ,0.1,3 ");
        Assert.Equal("0.4914,0.247,0.1,3", n.ToSpec());
        Assert.Equal(n.ToSpec(), InputNormalization.Canonical(" 0.4914, 0.2470 ,0.1,3 "));
        var computed = new InputNormalization([1 / 3.0], [Math.PI]);
        var back = InputNormalization.Parse(computed.ToSpec());
        Assert.Equal(computed.Mean, back.Mean);
        Assert.Equal(computed.Std, back.Std);
    }
}
