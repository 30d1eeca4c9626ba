using BnDist.Cli.Commands;

namespace BnDist.Cli.Tests;

public sealed class ArgReaderTests
{
    [Fact]
    public void Values_flags_and_equals_forms_are_read()
    {
        var a = new ArgReader("train", ["--lr", "0.1", "--no-shuffle", "--batch-size=64", "--seed", "7"]);
        Assert.Equal(0.1, a.Double("lr", 1));
        Assert.True(a.Flag("no-shuffle"));
        Assert.Equal(64, a.Int("batch-size", 1));
        Assert.Equal(7, a.Long("seed", 0));
        a.Finish();
    }

    [Theory]
    [InlineData(new[] { "--bogus", "1" }, "unknown option --bogus")]
    [InlineData(new[] { "--lr", "fast" }, "--lr expects a number, got 'fast'")]
    [InlineData(new[] { "--batch-size", "0" }, "--batch-size must be ≥ 1")]
    [InlineData(new[] { "--lr", "1", "--lr", "2" }, "--lr given twice")]
    [InlineData(new[] { "stray" }, "unexpected argument 'stray'")]
    [InlineData(new[] { "--no-shuffle=yes" }, "--no-shuffle takes no value")]
    [InlineData(new[] { "--lr-schedule", "linear" }, "unknown schedule 'linear'")]
    [InlineData(new[] { "--model", "resnet" }, "unknown model 'resnet'")]
    [InlineData(new[] { "--momentum", "1.5" }, "--momentum: must lie in [0, 1)")]
    public void A_wrong_option_gives_one_clear_line(string[] args, string expected)
    {
        var e = Assert.Throws<UsageException>(() =>
        {
            var a = new ArgReader("train", args);
            TrainOptions.Read(a);
            a.Finish();
        });
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void The_program_exits_with_2_on_a_usage_error()
    {
        var saved = System.Console.Error;
        using var err = new StringWriter();
        System.Console.SetError(err);
        try
        {
            Assert.Equal(2, Program.Main(["train", "--epochs", "x"]));
            Assert.Equal(2, Program.Main(["frobnicate"]));
        }
        finally
        {
            System.Console.SetError(saved);
        }
        Assert.Contains("bndist: train: --epochs expects an integer, got 'x'", err.ToString());
    }
}
