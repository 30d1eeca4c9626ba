using BnDist.Coordinator;

namespace BnDist.Integration.Tests;

/// <summary>How the coordinator groups ranks into hosts and picks the statistics transport.</summary>
public sealed class HostPlanTests
{
    private static World WorldOf(params string[] hosts) =>
        new([.. hosts.Select((h, r) => new JoinTicket($"w{r}", "cpu", 3, 10, 10, 0, "", h))]);

    [Fact]
    public void Ranks_of_one_host_form_one_group_and_sum_among_themselves()
    {
        var plan = HostPlan.For(WorldOf("a", "a", "a"), "auto", "run1", out var refusal);
        Assert.Null(refusal);
        Assert.Equal(StatsMode.SingleHost, plan.Mode);
        var group = plan.GroupOf(1, directGradients: true)!;
        Assert.Equal("bndist-run1-0", group.Segment);
        Assert.Equal([0, 1, 2], group.Ranks);
        Assert.True(group.Gradients);
    }

    [Fact]
    public void Hosts_are_numbered_by_their_first_rank_which_leads_them()
    {
        // Ranks 0, 2, 3 on "b", rank 1 on "a", rank 4 cannot share memory (a host of its own).
        var plan = HostPlan.For(WorldOf("b", "a", "b", "b", ""), "auto", "run2", out _);
        Assert.Equal(StatsMode.Hierarchical, plan.Mode);
        Assert.Equal([[0, 2, 3], [1], [4]], plan.Hosts);
        Assert.Equal([0, 1, 4], plan.Leaders);
        Assert.True(plan.IsLeader(1));
        Assert.False(plan.IsLeader(3));
        Assert.Equal(0, plan.HostOf(3));
        Assert.Equal("", plan.GroupOf(1, true)!.Segment); // alone on its host: no segment
        Assert.Equal("bndist-run2-0", plan.GroupOf(2, true)!.Segment);
    }

    [Theory]
    [InlineData("grpc", new[] { "a", "a" })]          // asked for
    [InlineData("auto", new[] { "a", "b", "c" })]     // nothing to share
    [InlineData("auto", new[] { "", "" })]            // nobody can share
    [InlineData("auto", new[] { "a" })]               // a world of one
    public void Statistics_go_through_the_coordinator_when_nothing_is_shared(string transport, string[] hosts)
    {
        var plan = HostPlan.For(WorldOf(hosts), transport, "run", out var refusal);
        Assert.Null(refusal);
        Assert.Equal(StatsMode.Flat, plan.Mode);
        Assert.Null(plan.GroupOf(0, true));
    }

    [Fact]
    public void Shm_refuses_a_worker_that_cannot_share_memory_naming_it()
    {
        HostPlan.For(WorldOf("a", "", "a"), "shm", "run", out var refusal);
        Assert.Equal("--stats-transport shm: worker 'w1' cannot share memory (its machine has no /dev/shm or futex); use --stats-transport auto or grpc",
            refusal);
    }
}
