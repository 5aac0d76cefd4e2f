import ArgumentParser
import BasinIO
import BasinNet
import BasinTensor
import Foundation

struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a classifier, an MLP of --sizes or any graph given with --arch (seeded and reproducible), and write it as safetensors with PyTorch-style names.")

    @Option(help: "Training data set (safetensors with x and y).")
    var data: String

    @Option(help: "Layer widths, input first, e.g. 64,128,128,10 (ignored with --init-from or --arch).")
    var sizes: String = "64,128,128,10"

    @Option(help: "Activation between layers: relu, tanh or gelu.")
    var activation: Activation = .relu

    @Option(name: .customLong("arch"), help: "Architecture JSON file (see docs/formats.md): train this graph (PyTorch's default initialisation) instead of an MLP of --sizes.")
    var archFile: String?

    @Option(help: "Start from this model's weights instead of a fresh initialisation (fine-tuning).")
    var initFrom: String?

    @Option(help: "Optimiser: sgd or adam.")
    var optimizer: OptimizerKind = .adam

    @Option(help: "Learning rate.")
    var lr: Float = 1e-3

    @Option(help: "SGD momentum.")
    var momentum: Float = 0.9

    @Option(help: "L2 weight decay.")
    var weightDecay: Float = 0

    @Option(help: "Epochs.")
    var epochs: Int = 20

    @Option(help: "Minibatch size.")
    var batch: Int = 64

    @Option(help: "Seed for initialisation and shuffling.")
    var seed: UInt64 = 0

    @Option(help: "Train only on rows whose label is in this comma-separated list (e.g. 0,1,2).")
    var classes: String?

    @Option(help: "Train only on the first N rows (after --classes).")
    var limit: Int?

    @Option(help: "Also write a checkpoint every N epochs into --checkpoint-dir.")
    var checkpointEvery: Int?

    @Option(help: "Folder for checkpoints.")
    var checkpointDir: String?

    @Option(help: "Checkpoints are named <name>-epochNNN.safetensors (default: the --out file's stem).")
    var checkpointName: String?

    @Option(help: "Evaluate on this data set after training.")
    var test: String?

    @Option(help: "Output .safetensors file.")
    var out: String

    @Flag(help: "No per-epoch lines.")
    var quiet = false

    @OptionGroup var nonFinite: NonFiniteOptions

    func validate() throws {
        try Check.finite(lr, 0...1e6, "--lr", openLower: true)
        try Check.finite(momentum, 0...1, "--momentum")
        try Check.finite(weightDecay, 0...1e6, "--weight-decay")
        try Check.range(epochs, 1...Check.maxIterations, "--epochs")
        try Check.range(batch, 1...Check.maxBatch, "--batch")
        if let limit { try Check.atLeast(limit, 1, "--limit") }
        if let checkpointEvery { try Check.range(checkpointEvery, 1...epochs, "--checkpoint-every") }
        if (checkpointEvery == nil) != (checkpointDir == nil) {
            throw ValidationError("--checkpoint-every and --checkpoint-dir go together (give both, or neither)")
        }
        if checkpointName != nil && checkpointDir == nil { throw ValidationError("--checkpoint-name needs --checkpoint-every and --checkpoint-dir") }
        if initFrom == nil && archFile == nil {
            let widths = try parseWidths(sizes, option: "--sizes")
            guard widths.count >= 2 else { throw ValidationError("--sizes needs at least an input and an output width") }
        }
        _ = try classList()
    }

    private func classList() throws -> Set<Int32>? {
        guard let classes else { return nil }
        return Set(try classes.split(separator: ",", omittingEmptySubsequences: false).map { s -> Int32 in
            guard let v = Int32(s.trimmingCharacters(in: .whitespaces)), v >= 0 else {
                throw ValidationError("--classes: '\(s)' is not a class index (0, 1, ...)")
            }
            return v
        })
    }

    /// The checkpoint files this run will write.
    private func checkpointURLs(stem: String) -> [(Int, URL)] {
        guard let every = checkpointEvery, let dir = checkpointDir else { return [] }
        return stride(from: every, through: epochs, by: every).map { epoch in
            (epoch, URL(fileURLWithPath: dir).appendingPathComponent(String(format: "%@-epoch%03d.safetensors", checkpointName ?? stem, epoch)))
        }
    }

    func run() throws {
        nonFinite.apply()
        let outURL = URL(fileURLWithPath: out)
        let checkpoints = checkpointURLs(stem: outURL.deletingPathExtension().lastPathComponent)
        var io = IOPlan()
        try io.file(data)
        try io.model(initFrom)
        try io.file(test)
        try io.file(archFile)
        io.output(out)
        // The last checkpoint may be the --out file itself (SampleModels/generate.sh does this): the same weights, written twice.
        for (_, url) in checkpoints where url.standardizedFileURL.path != outURL.standardizedFileURL.path { io.output(url.path) }
        if let checkpointDir { try FileCheck.folder(checkpointDir) }
        try io.check()

        var dataset = try Dataset(path: data)
        if let keep = try classList() {
            guard dataset.labelShape.isEmpty else { throw ValidationError("--classes needs class labels y [N]; '\(data)' holds a label per position") }
            dataset = dataset.subset(dataset.y.indices.filter { keep.contains(dataset.y[$0]) })
        }
        if let limit { dataset = dataset.slice(0..<min(limit, dataset.count)) }
        guard dataset.count > 0 else { throw ValidationError("no training rows left after --classes/--limit") }
        let testSet = try test.map { try Dataset(path: $0) }

        var network: Network
        var params: ParameterSet
        if let initFrom {
            let base = try LoadedModel(path: initFrom, architecture: ArchitectureChoice(activation: activation, file: archFile.map { URL(fileURLWithPath: $0) }))
            try refuseNonFinite(warnNonFinite(base), initFrom)
            try LoadedModel.check(dataset, fits: base)
            if let testSet { try LoadedModel.check(testSet, fits: base) }
            network = base.network
            params = base.params
        } else if let archFile {
            var arch = try ArchitectureFile.load(URL(fileURLWithPath: archFile))
            if arch.inputShape == nil { arch.inputShape = dataset.sampleShape.map { $0 } }
            var g = SeededGenerator(seed: seed)
            params = try arch.initialParameters(generator: &g)
            let outputs = try arch.validate(params, source: archFile)
            for d in [dataset] + (testSet.map { [$0] } ?? []) {
                try LoadedModel.check(d, fits: arch, params: params, outputs: outputs, name: archFile)
            }
            network = Network(arch)
        } else {
            let widths = try parseWidths(sizes, option: "--sizes")
            for d in [dataset] + (testSet.map { [$0] } ?? []) {
                guard widths[0] == d.x.columns else {
                    throw CLIError(.incompatibleData, "data set '\(d.name)' has \(d.x.columns) features per sample but --sizes starts with \(widths[0]); give --sizes \(([d.x.columns] + widths.dropFirst()).map(String.init).joined(separator: ","))")
                }
                guard d.classCount <= widths.last! else {
                    throw CLIError(.incompatibleData, "data set '\(d.name)' has labels up to \(d.classCount - 1) but --sizes ends with \(widths.last!) outputs (one per class)")
                }
            }
            try MemoryBudget.check(MemoryEstimate.training(widths: widths, batch: min(batch, dataset.count)), for: "--sizes \(sizes) with --batch \(batch)")
            let layers = (0..<(widths.count - 1)).map { (weight: "layers.\($0).weight", bias: Optional("layers.\($0).bias")) }
            let arch = Architecture.mlp(layers: layers, activation: activation)
            var g = SeededGenerator(seed: seed)
            params = Trainer.initialise(arch, sizes: widths, generator: &g)
            network = Network(arch)
        }
        var config = TrainingConfig()
        config.optimizer = optimizer
        config.learningRate = lr
        config.momentum = momentum
        config.weightDecay = weightDecay
        config.epochs = epochs
        config.batchSize = batch
        config.seed = seed
        // Integer buffers (BatchNorm's num_batches_tracked) are written back as int64, like PyTorch.
        let integers = Set(network.architecture.parameterSlots.filter(\.integer).map(\.name))
        let dtype: (String) -> DType = { integers.contains($0) ? .i64 : .f32 }
        let metadata = ["basin.trained": "optimizer=\(optimizer.rawValue) lr=\(lr) epochs=\(epochs) batch=\(batch) seed=\(seed) "
                        + (archFile.map { "arch=\(URL(fileURLWithPath: $0).lastPathComponent)" } ?? "activation=\(activation.rawValue)")
                        + (initFrom.map { " init=\(URL(fileURLWithPath: $0).lastPathComponent)" } ?? "")
                        + (classes.map { " classes=\($0)" } ?? "") + (limit.map { " limit=\($0)" } ?? "")]
        try Trainer.train(network: network, params: &params, data: dataset, config: config, progress: { r in
            if !quiet { printError(String(format: "epoch %3d  loss %.5f  accuracy %.4f", r.epoch, r.meanLoss, r.accuracy)) }
        }, checkpoint: { epoch, p in
            guard let url = checkpoints.first(where: { $0.0 == epoch })?.1 else { return }
            try p.write(to: url, dtype: dtype, metadata: metadata.merging(["basin.epoch": String(epoch)]) { a, _ in a })
        })
        try params.write(to: outURL, dtype: dtype, metadata: metadata)
        if let testSet {
            let m = network.evaluate(params, on: testSet)
            print(String(format: "%@: test loss %.6f  accuracy %.4f", out, m.loss, m.accuracy))
        }
    }
}
