using System.CommandLine;
using System.Text.Json;
using BnDist.Coordinator;
using BnDist.Core.Checkpoints;

namespace BnDist.Cli.Commands;

/// <summary>What coordinator and launch share: their options, their settings, and the files a run writes beside its checkpoints.</summary>
internal sealed class ClusterSetup
{
    /// <param name="knownModel">Require a model ModelFactory builds (launch's bndist workers); a coordinator serves any model its workers build.</param>
    public ClusterSetup(string command, int defaultPort, bool knownModel)
    {
        Command = command;
        Cluster = new ClusterOptions(defaultPort);
        Run = new RunOptions(cluster: true, knownModel);
    }

    public string Command { get; }

    public RunOptions Run { get; }

    public ClusterOptions Cluster { get; }

    public RunFileOptions Files { get; } = new();

    public void AddTo(Command command)
    {
        Run.AddTo(command);
        Cluster.AddTo(command);
        Files.AddTo(command);
    }

    /// <summary>
    /// The coordinator's settings: the "Coordinator" configuration section (appsettings.json,
    /// BNDIST__COORDINATOR__…) over <paramref name="defaults"/>, the command line on top, the
    /// run's config resolved against --resume's checkpoint; validated (a bad one is a usage error).
    /// </summary>
    public CoordinatorSettings Settings(ParseResult r, CoordinatorSettings defaults)
    {
        var settings = SettingsConfiguration.Bind(CoordinatorSettings.Section, defaults);
        Cluster.Apply(r, settings);
        settings.Init = r.Pick(Files.Init, settings.Init);
        settings.Save = r.Pick(Files.Save, settings.Save);
        settings.Resume = r.Pick(Files.Resume, settings.Resume);
        settings.Training = Run.Resolve(r, settings.Training, settings.Resume, r.GetValue(Files.OverrideConfig),
            line => System.Console.WriteLine($"bndist {Command}: {line}"), out _);
        try
        {
            return settings.Validate();
        }
        catch (ArgumentException e)
        {
            throw new UsageException(e.Message);
        }
    }

    /// <summary>
    /// --save-init: the initial state exactly as the coordinator sends it to every rank (rank 0's
    /// freshly built model with --init's or --resume's state imposed), written once every rank has
    /// prepared and before the first step; a failed write ends the run with the reason.
    /// </summary>
    public static void SaveInitialState(string path, RunCoordinator run) =>
        run.InitialStateReady += image =>
        {
            using var stream = new MemoryStream(image, writable: false);
            try
            {
                SafeTensorsFile.Read(stream, "the initial state").WriteAtomic(path);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new IOException($"--save-init: writing {path} failed: {e.Message}", e);
            }
        };

    /// <summary>
    /// --metrics-out: JSON lines with the fields of train's — {step, epoch, loss, lr, samples_per_s}
    /// per committed step, {step, epoch, test_loss, test_accuracy} per evaluation.
    /// </summary>
    public static IDisposable WriteMetrics(string path, RunCoordinator run) => new MetricsWriter(path, run);

    private sealed class MetricsWriter : IDisposable
    {
        private readonly StreamWriter _writer;
        private readonly object _gate = new();
        private int _epoch = 1;
        private bool _closed;

        public MetricsWriter(string path, RunCoordinator run)
        {
            _writer = new StreamWriter(path, append: false);
            run.StepCommitted += s =>
            {
                _epoch = s.Epoch + 1;
                Write(new { step = s.Step + 1, epoch = _epoch, loss = s.Loss, lr = s.LearningRate, samples_per_s = s.SamplesPerSecond }, flush: false);
            };
            run.Evaluated += (step, loss, accuracy) => Write(new { step, epoch = _epoch, test_loss = loss, test_accuracy = accuracy }, flush: true);
        }

        private void Write<T>(T record, bool flush)
        {
            lock (_gate)
            {
                if (_closed) return;
                _writer.WriteLine(JsonSerializer.Serialize(record));
                if (flush) _writer.Flush();
            }
        }

        public void Dispose()
        {
            lock (_gate)
            {
                _closed = true;
                _writer.Dispose();
            }
        }
    }
}
