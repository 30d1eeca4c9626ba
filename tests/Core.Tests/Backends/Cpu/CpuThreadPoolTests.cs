using BnDist.Core.Backends.Cpu;

namespace BnDist.Core.Tests.Backends.Cpu;

public class CpuThreadPoolTests
{
    [Theory]
    [InlineData(1, 1000)]
    [InlineData(2, 1000)]
    [InlineData(3, 1)]
    [InlineData(3, 2)]
    [InlineData(4, 10_007)]
    public void For_RunsEveryIndexExactlyOnce(int threads, int count)
    {
        using var pool = new CpuThreadPool(threads);
        var hits = new int[count];
        for (int round = 0; round < 20; round++)
        {
            Array.Clear(hits);
            pool.For(count, i => Interlocked.Increment(ref hits[i]));
            Assert.All(hits, h => Assert.Equal(1, h));
        }
        Assert.Equal(threads, pool.Threads);
    }

    [Fact]
    public void For_ZeroCount_DoesNothing()
    {
        using var pool = new CpuThreadPool(2);
        pool.For(0, _ => throw new InvalidOperationException());
    }

    [Fact]
    public void For_UsesWorkerThreads()
    {
        using var pool = new CpuThreadPool(2);
        var threadIds = new System.Collections.Concurrent.ConcurrentDictionary<int, bool>();
        // Every index blocks until both participants have arrived, so both threads must take part.
        using var barrier = new Barrier(2);
        pool.For(2, _ =>
        {
            threadIds[Environment.CurrentManagedThreadId] = true;
            Assert.True(barrier.SignalAndWait(TimeSpan.FromSeconds(10)));
        });
        Assert.Equal(2, threadIds.Count);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void For_RethrowsBodyException_AndStaysUsable(int threads)
    {
        using var pool = new CpuThreadPool(threads);
        var ex = Assert.Throws<InvalidOperationException>(() => pool.For(100, i =>
        {
            if (i == 37)
                throw new InvalidOperationException("boom");
        }));
        Assert.Equal("boom", ex.Message);

        int sum = 0;
        pool.For(100, i => Interlocked.Add(ref sum, i));
        Assert.Equal(4950, sum);
    }

    [Fact]
    public void For_NestedCallRunsInline()
    {
        using var pool = new CpuThreadPool(2);
        var hits = new int[8 * 16];
        pool.For(8, i => pool.For(16, j => Interlocked.Increment(ref hits[i * 16 + j])));
        Assert.All(hits, h => Assert.Equal(1, h));
    }

    [Fact]
    public void For_ManySmallCalls()
    {
        using var pool = new CpuThreadPool(2);
        long total = 0;
        for (int round = 0; round < 5_000; round++)
            pool.For(3, i => Interlocked.Add(ref total, i + 1));
        Assert.Equal(5_000L * 6, total);
    }

    [Fact]
    public async Task For_FromTwoOutsideThreadsAtOnce_BothComplete()
    {
        using var pool = new CpuThreadPool(3);
        long a = 0, b = 0;
        var other = Task.Run(() =>
        {
            for (int round = 0; round < 2_000; round++)
                pool.For(5, i => Interlocked.Add(ref a, i));
        });
        for (int round = 0; round < 2_000; round++)
            pool.For(7, i => Interlocked.Add(ref b, i));
        await other;
        Assert.Equal(2_000L * 10, a);
        Assert.Equal(2_000L * 21, b);
    }

    [Fact]
    public void Constructor_RejectsZeroThreads() =>
        Assert.Throws<ArgumentOutOfRangeException>(() => new CpuThreadPool(0));

    [Fact]
    public void For_AfterDispose_Throws()
    {
        var pool = new CpuThreadPool(2);
        pool.Dispose();
        pool.Dispose();
        Assert.Throws<ObjectDisposedException>(() => pool.For(4, _ => { }));
    }
}
