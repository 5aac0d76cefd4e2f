import ArgumentParser
import BasinCurses
import BasinExplorer
import BasinFusion
import BasinIO
import BasinNet
import BasinUI
import Foundation

/// `basin explore` (the default command): the terminal explorer.
struct ExploreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "explore",
        abstract: "Open the terminal explorer on two or more models (no models: the sample session).",
        discussion: """
            With no arguments opens the sample session: SampleModels/seeds/mlp-seed0 and mlp-seed1 with the digits \
            train and test splits (SampleModels is found next to the executable, or set BASIN_SAMPLES_DIR). \
            Press ? inside for the keys.
            """)

    @Argument(help: "Model files (safetensors), two or more, all of one architecture.")
    var models: [String] = []

    @Option(name: .customLong("data"), help: "A data set (safetensors with x and y); give it twice: train then test.")
    var data: [String] = []

    @Option(help: "Base model for task arithmetic, TIES and DARE in the soup view.")
    var base: String?

    @OptionGroup var architecture: ArchitectureOptions

    @Option(help: "Theme name or .theme file (default: BASIN_THEME, then dark).")
    var theme: String?

    @Option(help: "Epochs of a curve fit started with f or F (60 take a few seconds on the sample models; the curve redraws every epoch).")
    var fitEpochs: Int = 60

    @Option(help: "Points evaluated along each path.")
    var points: Int = 21

    @Option(help: "Held-out data set greedy soup chooses ingredients on (default: the last --data, which in the sample session is the test split: its seeds trained on all of digits-train).")
    var heldout: String?

    @Option(help: "Landscape grid points per side.")
    var landscape: Int = 21

    @Option(name: .customLong("eval"), help: ArgumentHelp("A named evaluation set the soup view reports the merged model on, beside the --data sets (repeat it: e.g. one test set per task, to see a merge trade one task for another). NAME= may be left out (then the file's name).", valueName: "NAME=FILE"))
    var evals: [String] = []

    @OptionGroup var nonFinite: NonFiniteOptions

    /// `--evaluate CMD` in the soup view: each soup is handed to the evaluator as a model folder in the background and
    /// its metrics appear as they arrive; greedy soup (g) chooses by the evaluator's metric.
    @OptionGroup var evaluator: EvaluatorOptions

    @OptionGroup var choice: EvaluatorMetricOptions

    mutating func validate() throws {
        if models.count == 1 { throw ValidationError("give two or more models (or none for the sample session)") }
        try Check.range(points, 3...1001, "--points")
        try Check.range(fitEpochs, 1...10_000, "--fit-epochs")
        try Check.range(landscape, 3...201, "--landscape")
        try choice.validate(with: evaluator)
        let names = try namedEvals.map(\.name)
        if let dup = names.first(where: { n in names.filter { $0 == n }.count > 1 }) {
            throw ValidationError("--eval: the name '\(dup)' is given twice (each evaluation set needs its own name)")
        }
    }

    /// `--eval NAME=FILE` (or `--eval FILE`, named after the file) as (name, path).
    var namedEvals: [(name: String, path: String)] {
        get throws {
            try evals.map { spec in
                guard let eq = spec.firstIndex(of: "=") else {
                    return (URL(fileURLWithPath: spec).deletingPathExtension().lastPathComponent, spec)
                }
                let name = String(spec[..<eq]), path = String(spec[spec.index(after: eq)...])
                guard !name.isEmpty, !path.isEmpty else {
                    throw ValidationError("--eval '\(spec)': give NAME=FILE (a name, '=', then the data set's file)")
                }
                return (name, path)
            }
        }
    }

    func run() throws {
        var modelPaths = models
        var dataPaths = data
        if modelPaths.isEmpty {
            let samples = try SampleSession.locate()
            modelPaths = ["seeds/mlp-seed0.safetensors", "seeds/mlp-seed1.safetensors"].map { samples.appendingPathComponent($0).path }
            if dataPaths.isEmpty {
                dataPaths = ["data/digits-train.safetensors", "data/digits-test.safetensors"].map { samples.appendingPathComponent($0).path }
            }
        }
        if dataPaths.isEmpty { throw ValidationError("give a data set with --data (train, then test)") }
        nonFinite.apply()
        var io = IOPlan()
        try io.models(modelPaths)
        try io.model(base)
        try io.files(dataPaths)
        try io.file(heldout)
        let namedEvals = try self.namedEvals
        try io.files(namedEvals.map(\.path))
        try io.file(architecture.archFile)
        if let theme, theme.contains("/") || theme.hasSuffix(".theme") { try io.file(theme) }
        try io.check()
        let engine = try ExplorerEngine.load(models: modelPaths, data: dataPaths, base: base, heldOut: heldout,
                                              architecture: architecture.choice, evals: namedEvals)
        for m in engine.models + (engine.base.map { [$0] } ?? []) { warnNonFinite(m) }
        var options = ExplorerOptions()
        options.fitEpochs = fitEpochs
        options.pathPoints = points
        options.landscapeResolution = landscape
        options.evaluator = evaluator.evaluator
        options.evaluateJobs = evaluator.evaluateJobs
        options.evaluatorMetric = choice.metric
        options.evaluatorHigherIsBetter = choice.higherIsBetter
        try Self.runExplorer(engine: engine, options: options, theme: theme)
    }

    /// Runs the explorer on the terminal until it quits, then ends the process.
    /// Runs the explorer until it quits. `next` may then give another session to open on the same terminal
    /// (`basin lesson` going on from the MLP samples to the CNN samples); nil ends the process.
    static func runExplorer(engine: ExplorerEngine, options: ExplorerOptions, theme: String?,
                            next: (ExplorerApp) throws -> (ExplorerEngine, ExplorerOptions)? = { _ in nil }) throws -> Never {
        let themeValue = try ThemeLoader.resolve(choice: theme, executablePath: SampleSession.executablePath)
        let terminal = try CursesTerminal(theme: themeValue)
        var session = (engine, options)
        while true {
            let loop = RunLoop(app: ExplorerApp(engine: session.0, options: session.1, size: terminal.size), pollTimeoutMs: 30)
            let final: ExplorerApp
            let following: (ExplorerEngine, ExplorerOptions)?
            do {
                final = try loop.run(on: terminal)
                following = try next(final)
            } catch {
                terminal.shutdown()
                loop.app.stopExternalEvaluations()
                throw error
            }
            guard let following else {
                terminal.shutdown()
                // A running evaluator (--evaluate) is stopped and its candidate folder removed before the process ends.
                final.stopExternalEvaluations()
                exitLeavingBackgroundThreads()
            }
            final.stopExternalEvaluations()
            session = following
        }
    }
}

/// Ends the process once the explorer has quit and the terminal is restored, without running the exit
/// handlers: background jobs (cancelled, finishing their current step) may still be inside OpenBLAS, and
/// OpenBLAS 0.3.21's exit handler (blas_thread_shutdown_) can then wait forever for one of its worker threads
/// (seen as a hang after q in the tmux tests, about one run in five). Everything the explorer writes is
/// written and closed by the time it quits (exports are atomic and synchronous), so nothing is lost.
func exitLeavingBackgroundThreads() -> Never {
    fflush(nil)
    _exit(0)
}

/// Finds SampleModels: BASIN_SAMPLES_DIR, then walking up from the executable, then ./SampleModels.
enum SampleSession {
    static var executablePath: String { Bundle.main.executablePath ?? CommandLine.arguments[0] }

    static func locate(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> URL {
        let fm = FileManager.default
        func ok(_ u: URL) -> Bool { fm.fileExists(atPath: u.appendingPathComponent("seeds/mlp-seed0.safetensors").path) }
        if let d = environment["BASIN_SAMPLES_DIR"], !d.isEmpty {
            let u = URL(fileURLWithPath: d)
            if ok(u) { return u }
            throw ValidationError("BASIN_SAMPLES_DIR=\(d) has no seeds/mlp-seed0.safetensors")
        }
        var dir = URL(fileURLWithPath: executablePath).resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<8 {
            let c = dir.appendingPathComponent("SampleModels")
            if ok(c) { return c }
            let parent = dir.deletingLastPathComponent()
            if parent.path == dir.path { break }
            dir = parent
        }
        let cwd = URL(fileURLWithPath: fm.currentDirectoryPath).appendingPathComponent("SampleModels")
        if ok(cwd) { return cwd }
        throw ValidationError("""
            no models given and the sample models were not found (looked for SampleModels/ above \(executablePath) \
            and in the current directory; set BASIN_SAMPLES_DIR). Usage: basin explore MODEL MODEL --data TRAIN --data TEST
            """)
    }
}
