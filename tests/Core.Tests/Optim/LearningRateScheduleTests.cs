using BnDist.Core.Optim;

namespace BnDist.Core.Tests.Optim;

public sealed class LearningRateScheduleTests
{
    [Fact]
    public void Each_schedule_gives_its_closed_form()
    {
        Assert.Equal(0.1, new LearningRateSchedule("constant", 0.1, 100, 10, 0.5).At(77));
        var step = new LearningRateSchedule("step", 0.1, 100, 10, 0.5);
        Assert.Equal(0.1, step.At(9), 12);
        Assert.Equal(0.05, step.At(10), 12);
        Assert.Equal(0.025, step.At(25), 12);
        var exp = new LearningRateSchedule("exp", 0.1, 100, 10, 0.5);
        Assert.Equal(0.1 * Math.Pow(0.5, 0.5), exp.At(5), 12);
        var cosine = new LearningRateSchedule("cosine", 0.2, 100, 10, 0.5);
        Assert.Equal(0.2, cosine.At(0), 12);
        Assert.Equal(0.1, cosine.At(50), 12);
        Assert.True(cosine.At(99) < 1e-3);
    }

    [Fact]
    public void An_unknown_schedule_is_named_in_the_error()
    {
        var e = Assert.Throws<ArgumentException>(() => new LearningRateSchedule("linear", 0.1, 10, 1, 0.1).Validate());
        Assert.Contains("'linear'", e.Message);
    }
}
