import ArgumentParser
import BasinFusion
import BasinIO
import BasinNet
import Foundation

/// `--bn-reset DATA [--bn-batch N]`: every BatchNorm's running statistics recomputed over DATA before a
/// model built by the command (a soup, a merge, a path point) is evaluated or written.
struct BatchNormResetOptions: ParsableArguments {
    @Option(name: .customLong("bn-reset"), help: ArgumentHelp("Recompute every BatchNorm's running statistics over this data set (as torch.optim.swa_utils.update_bn: statistics reset, train mode, dataset order) before evaluating or writing.", valueName: "DATA"))
    var bnReset: String?

    @Option(name: .customLong("bn-batch"), help: "Batch size of the BatchNorm reset (update_bn's loader batch).")
    var bnBatch: Int = 64

    func validate() throws {
        try Check.range(bnBatch, 1...Check.maxBatch, "--bn-batch")
    }

    /// The reset for `model`'s network, the data checked to fit it; nil without --bn-reset.
    func make(for model: LoadedModel) throws -> BatchNormReset? {
        guard let bnReset else { return nil }
        let data = try Dataset(path: bnReset)
        try LoadedModel.check(data, fits: model)
        return try BatchNormReset(network: model.network, data: data, batchSize: bnBatch, model: model.path)
    }
}

/// `basin path`'s corrections: `--bn-reset DATA`, `--repair DATA`, `--bn-batch N`.
struct CorrectionOptions: ParsableArguments {
    @Option(name: .customLong("bn-reset"), help: ArgumentHelp("Recompute every BatchNorm's running statistics of each point over this data set (as torch.optim.swa_utils.update_bn: statistics reset, train mode, dataset order) before evaluating it.", valueName: "DATA"))
    var bnReset: String?

    @Option(help: ArgumentHelp("REPAIR each point (Jordan et al. 2022): rescale every conv/linear channel's pre-activation statistics on this data set to the interpolation of the endpoints' statistics, then evaluate.", valueName: "DATA"))
    var repair: String?

    @Option(name: .customLong("bn-batch"), help: "Batch size of the BatchNorm reset and REPAIR passes (update_bn's loader batch).")
    var bnBatch: Int = 64

    func validate() throws {
        try Check.range(bnBatch, 1...Check.maxBatch, "--bn-batch")
    }

    func dataset(_ path: String, fits model: LoadedModel) throws -> Dataset {
        let data = try Dataset(path: path)
        try LoadedModel.check(data, fits: model)
        return data
    }

    /// The correction asked for (the BatchNorm reset first when both are given); nil for none.
    func make(for model: LoadedModel) throws -> PointCorrection? {
        if let bnReset {
            return .bnReset(try BatchNormReset(network: model.network, data: dataset(bnReset, fits: model), batchSize: bnBatch, model: model.path))
        }
        if let repair {
            return .repair(try Repair(network: model.network, like: model.params, data: dataset(repair, fits: model),
                                      batchSize: bnBatch, model: model.path))
        }
        return nil
    }
}

extension BatchNormResetOptions {
    /// Recorded in a written model's metadata: what its statistics were recomputed on.
    var metadata: [String: String] {
        guard let bnReset else { return [:] }
        return ["basin.bn_reset": "data=\(URL(fileURLWithPath: bnReset).lastPathComponent) batch=\(bnBatch)"]
    }
}
