import ArgumentParser
import BasinFusion
import BasinIO
import BasinNet
import BasinTensor
import Foundation

struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a classifier, an MLP of --sizes or any graph given with --arch, or a GPT-2 / LLaMA-style transformer on token data (--config), seeded and reproducible; written as safetensors with PyTorch-style names (a transformer as a Hugging Face folder).")

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

    @Option(help: "A transformer's config.json (model_type gpt2, llama, mistral or qwen2): train a fresh model of that shape from Hugging Face's initialisation (seeded) on token data; --out is then a folder (config.json and model.safetensors).")
    var config: String?

    @Option(help: "Token data: train only on rows holding token ID at position POS, given as POS=ID (e.g. 1=23).")
    var tokenAt: String?

    @Option(help: "Adam/AdamW second-moment decay (beta2).")
    var beta2: Float = 0.999

    @Option(help: "Learning-rate warmup: steps over which the rate rises linearly from 0.")
    var warmup: Int = 0

    @Option(help: "Learning-rate decay: the last N steps, over which the rate falls linearly to 0.")
    var decay: Int = 0

    @Option(help: "Optimiser: sgd, adam or adamw (decoupled weight decay on matrices and embeddings only).")
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
        try Check.finite(beta2, 0...0.999999, "--beta2")
        try Check.range(warmup, 0...Check.maxIterations, "--warmup")
        try Check.range(decay, 0...Check.maxIterations, "--decay")
        if config != nil && initFrom != nil { throw ValidationError("give --config (a fresh transformer) or --init-from (fine-tuning), not both") }
        if config != nil && archFile != nil { throw ValidationError("give --config (a transformer's config.json) or --arch (an architecture file), not both") }
        _ = try tokenFilter()
        if initFrom == nil && archFile == nil && config == nil {
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

    private func tokenFilter() throws -> (position: Int, id: Int)? {
        guard let tokenAt else { return nil }
        let parts = tokenAt.split(separator: "=", omittingEmptySubsequences: false)
        guard parts.count == 2, let p = Int(parts[0].trimmingCharacters(in: .whitespaces)), let id = Int(parts[1].trimmingCharacters(in: .whitespaces)),
              p >= 0, id >= 0 else {
            throw ValidationError("--token-at: '\(tokenAt)' is not POS=ID with a position and a token id (e.g. 1=23)")
        }
        return (p, id)
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
        try io.file(config)
        try io.file(test)
        try io.file(archFile)
        // A transformer goes to a Hugging Face folder: its files, not the folder, are the outputs.
        let transformer = config != nil || initFrom.map { HuggingFaceModel.isModelDirectory(URL(fileURLWithPath: $0)) } == true
        if transformer && CheckpointWriter.isFolder(URL(fileURLWithPath: out)) { io.checkpoint(out) } else { io.output(out) }
        // The last checkpoint may be the --out file itself (SampleModels/generate.sh does this): the same weights, written twice.
        for (_, url) in checkpoints where url.standardizedFileURL.path != outURL.standardizedFileURL.path { io.output(url.path) }
        if let checkpointDir { try FileCheck.folder(checkpointDir) }
        try io.check()

        var dataset = try Dataset(path: data)
        if let keep = try classList() {
            guard dataset.labelShape.isEmpty else { throw ValidationError("--classes needs class labels y [N]; '\(data)' holds a label per position") }
            dataset = dataset.subset(dataset.y.indices.filter { keep.contains(dataset.y[$0]) })
        }
        if let filter = try tokenFilter() {
            guard dataset.isTokens else { throw ValidationError("--token-at needs token data (input_ids, labels); '\(data)' holds x and y") }
            let width = dataset.x.columns
            guard filter.position < width else {
                throw ValidationError("--token-at: position \(filter.position) is beyond the sequences of '\(data)' (length \(width))")
            }
            let x = dataset.x
            dataset = dataset.subset((0..<dataset.count).filter { Int(x[$0, filter.position]) == filter.id })
        }
        if let limit { dataset = dataset.slice(0..<min(limit, dataset.count)) }
        guard dataset.count > 0 else { throw ValidationError("no training rows left after --classes/--token-at/--limit") }
        let testSet = try test.map { try Dataset(path: $0) }

        var network: Network
        var params: ParameterSet
        /// A transformer's config.json, written beside its weights when --out is a folder.
        var configData: Data?
        if let config {
            let url = URL(fileURLWithPath: config)
            let data = try Data(contentsOf: url)
            let parsed = try TransformerConfig(data: data, file: config)
            // Each size is bounded by the config reader; their product (a 2^24-token vocabulary 2^20 wide) is
            // estimated here, before the weights are drawn.
            try MemoryBudget.check(MemoryEstimate.transformerTraining(parsed, sequence: max(1, dataset.x.columns), batch: min(batch, dataset.count)),
                                   for: "\(config) (vocab_size \(parsed.vocabularySize), width \(parsed.hiddenSize), \(parsed.layers) layers) trained with --batch \(batch)")
            let built = TransformerArchitecture(config: parsed)
            let fresh = try LoadedModel(source: ParameterSetSource(built.initialParameters(seed: seed), label: config),
                                        architecture: built.architecture)
            try LoadedModel.check(dataset, fits: fresh)
            if let testSet { try LoadedModel.check(testSet, fits: fresh) }
            network = fresh.network
            params = fresh.params
            configData = data
        } else if let initFrom {
            let base = try LoadedModel(path: initFrom, architecture: ArchitectureChoice(activation: activation, file: archFile.map { URL(fileURLWithPath: $0) }))
            try refuseNonFinite(warnNonFinite(base), initFrom)
            try LoadedModel.check(dataset, fits: base)
            if let testSet { try LoadedModel.check(testSet, fits: base) }
            network = base.network
            params = base.params
            configData = (base.source as? HuggingFaceModel)?.configData
        } else if let archFile {
            var arch = try ArchitectureFile.load(URL(fileURLWithPath: archFile))
            if arch.inputShape == nil { arch.inputShape = dataset.sampleShape.map { $0 } }
            // Every op's parameter shapes and output sizes first, with checked arithmetic: a file whose sizes are
            // each in range but whose product is enormous is refused by name before anything is allocated.
            try arch.plan(source: archFile).requireMemory(batch: min(batch, dataset.count), training: true,
                                                          for: "train it with --batch \(batch)")
            var g = SeededGenerator(seed: seed)
            params = try arch.initialParameters(generator: &g, source: archFile)
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
        config.beta2 = beta2
        config.warmupSteps = warmup
        config.decaySteps = decay
        // Integer buffers (BatchNorm's num_batches_tracked) are written back as int64, like PyTorch.
        let integers = Set(network.architecture.parameterSlots.filter(\.integer).map(\.name))
        let dtype: (String) -> DType = { integers.contains($0) ? .i64 : .f32 }
        let metadata = ["basin.trained": "optimizer=\(optimizer.rawValue) lr=\(lr) epochs=\(epochs) batch=\(batch) seed=\(seed) "
                        + (archFile.map { "arch=\(URL(fileURLWithPath: $0).lastPathComponent)" } ?? "activation=\(activation.rawValue)")
                        + (initFrom.map { " init=\(URL(fileURLWithPath: $0).lastPathComponent)" } ?? "")
                        + (classes.map { " classes=\($0)" } ?? "") + (limit.map { " limit=\($0)" } ?? "")
                        + (tokenAt.map { " token_at=\($0)" } ?? "") + (beta2 != 0.999 ? " beta2=\(beta2)" : "")
                        + (warmup > 0 ? " warmup=\(warmup)" : "") + (decay > 0 ? " decay=\(decay)" : "")
                        + (self.config.map { " config=\(URL(fileURLWithPath: $0).lastPathComponent)" } ?? "")]
        try Trainer.train(network: network, params: &params, data: dataset, config: config, progress: { r in
            if !quiet { printError(String(format: "epoch %3d  loss %.5f  accuracy %.4f", r.epoch, r.meanLoss, r.accuracy)) }
        }, checkpoint: { epoch, p in
            guard let url = checkpoints.first(where: { $0.0 == epoch })?.1 else { return }
            try p.write(to: url, dtype: dtype, metadata: metadata.merging(["basin.epoch": String(epoch)]) { a, _ in a })
        })
        if let configData, CheckpointWriter.isFolder(outURL) {
            // A transformer: a Hugging Face folder, as save_pretrained writes it (format: pt).
            let plan = params.pairs.map { TensorPlan(name: $0.0, dtype: dtype($0.0), shape: $0.1.shape) }
            let writer = try CheckpointWriter(out: outURL, plan: plan, metadata: metadata.merging(["format": "pt"]) { a, _ in a },
                                              shardSize: CheckpointWriter.defaultShardSize,
                                              protecting: [URL(fileURLWithPath: data)] + (initFrom.map { [URL(fileURLWithPath: $0)] } ?? []),
                                              extraFiles: [(HuggingFaceModel.configName, configData)])
            for (name, t) in params.pairs { try writer.write(name, t) }
            try writer.finish()
        } else {
            try params.write(to: outURL, dtype: dtype, metadata: metadata)
        }
        if let testSet {
            let m = network.evaluate(params, on: testSet)
            print(String(format: "%@: test loss %.6f  accuracy %.4f", out, m.loss, m.accuracy))
        }
    }
}
