import ArgumentParser
import BasinExplorer
import BasinNet
import Foundation

/// `basin lesson`: the explorer on the sample seeds with the guided lesson open.
struct LessonCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lesson",
        abstract: "A guided lesson over the sample models: the barrier between two seeds, why permutations exist, alignment, a fitted curve, a soup, the landscape, then BatchNorm on two CNNs; one step per screen (Enter or → goes on, ← back, L closes the lesson, q quits).",
        discussion: "Runs the explorer on SampleModels/seeds/mlp-seed0 and mlp-seed1 with the digits splits (SampleModels is found next to the executable, or set BASIN_SAMPLES_DIR); its last MLP step goes on to SampleModels/cnn/vgg-seed0 and vgg-seed1 (a small CNN with BatchNorm) for the BatchNorm steps, when those samples are there. With --cnn the whole tour runs on the CNN samples. L starts the session's lesson in any explorer session.")

    @Flag(help: "Take the whole tour on the CNN samples (BatchNorm) instead of the MLPs first.")
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
        let mlp = ["seeds/mlp-seed0.safetensors", "seeds/mlp-seed1.safetensors"].map { samples.appendingPathComponent($0).path }
        let cnnModels = ["cnn/vgg-seed0.safetensors", "cnn/vgg-seed1.safetensors"].map { samples.appendingPathComponent($0).path }
        let data = ["data/digits-train.safetensors", "data/digits-test.safetensors"].map { samples.appendingPathComponent($0).path }
        let arch = samples.appendingPathComponent("cnn/vgg.arch.json")
        let cnnPresent = ([arch.path] + cnnModels).allSatisfy { FileManager.default.fileExists(atPath: $0) }
        if cnn && !cnnPresent {
            throw ValidationError("--cnn needs the CNN samples: \(arch.path) and \(cnnModels.joined(separator: ", ")) must exist (SampleModels/generate.sh makes them)")
        }
        var io = IOPlan()
        try io.models(cnn ? cnnModels : mlp)
        if cnnPresent && !cnn { try io.models(cnnModels) }
        try io.files(data)
        try io.file(cnnPresent ? arch.path : nil)
        if let theme, theme.contains("/") || theme.hasSuffix(".theme") { try io.file(theme) }
        try io.check()
        func cnnEngine() throws -> ExplorerEngine {
            try ExplorerEngine.load(models: cnnModels, data: data, architecture: ArchitectureChoice(file: arch))
        }
        var options = ExplorerOptions()
        options.fitEpochs = fitEpochs
        options.startWithLesson = true
        if cnn {
            try ExploreCommand.runExplorer(engine: try cnnEngine(), options: options, theme: theme)
        }
        // One tour: the MLPs, then (its last MLP step, Enter) the CNN samples on the same terminal.
        options.lessonTour = cnnPresent ? .continuingOnCNN : .session
        try ExploreCommand.runExplorer(engine: try ExplorerEngine.load(models: mlp, data: data), options: options, theme: theme) { final in
            guard final.continueOnCNN else { return nil }
            var next = options
            next.lessonTour = .cnnPart
            return (try cnnEngine(), next)
        }
    }
}
