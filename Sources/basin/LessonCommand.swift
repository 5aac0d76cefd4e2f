import ArgumentParser
import BasinExplorer
import BasinNet
import Foundation

/// `basin lesson`: the explorer on the sample seeds with the guided lesson open.
struct LessonCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lesson",
        abstract: "A guided lesson over the sample models: the barrier between two seeds, why permutations exist, alignment, a fitted curve, a soup, the landscape; one step per screen (Enter or → goes on, ← back, L closes the lesson, q quits).",
        discussion: "Runs the explorer on SampleModels/seeds/mlp-seed0 and mlp-seed1 with the digits splits (SampleModels is found next to the executable, or set BASIN_SAMPLES_DIR); with --cnn on SampleModels/cnn/vgg-seed0 and vgg-seed1 (a small CNN with BatchNorm), where the tour gains its BatchNorm-reset step. L starts the same lesson in any explorer session.")

    @Flag(help: "Take the tour on the CNN samples (BatchNorm): it gains the step that resets BatchNorm statistics along the path.")
    var cnn = false

    @Option(help: "Theme name or .theme file (default: BASIN_THEME, then dark).")
    var theme: String?

    @Option(help: "Epochs of the lesson's curve fit (60 take a few seconds and show the curve bending).")
    var fitEpochs: Int = 60

    func validate() throws {
        try Check.range(fitEpochs, 1...Check.maxIterations, "--fit-epochs")
    }

    func run() throws {
        let samples = try SampleSession.locate()
        let models = (cnn ? ["cnn/vgg-seed0.safetensors", "cnn/vgg-seed1.safetensors"] : ["seeds/mlp-seed0.safetensors", "seeds/mlp-seed1.safetensors"])
            .map { samples.appendingPathComponent($0).path }
        let data = ["data/digits-train.safetensors", "data/digits-test.safetensors"].map { samples.appendingPathComponent($0).path }
        let arch = cnn ? samples.appendingPathComponent("cnn/vgg.arch.json") : nil
        if let arch, !FileManager.default.fileExists(atPath: arch.path) {
            throw ValidationError("--cnn needs the CNN samples: \(arch.path) does not exist (SampleModels/generate.sh makes them)")
        }
        var io = IOPlan()
        try io.models(models)
        try io.files(data)
        try io.file(arch?.path)
        if let theme, theme.contains("/") || theme.hasSuffix(".theme") { try io.file(theme) }
        try io.check()
        let engine = try ExplorerEngine.load(models: models, data: data, architecture: ArchitectureChoice(file: arch))
        var options = ExplorerOptions()
        options.fitEpochs = fitEpochs
        options.startWithLesson = true
        try ExploreCommand.runExplorer(engine: engine, options: options, theme: theme)
    }
}
