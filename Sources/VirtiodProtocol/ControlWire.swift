import FoundationEssentials

/// JSON as the control protocol writes it: camelCase keys as the types name
/// them, sorted, one object per line.
public enum ControlWire {
    public static var encoder: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return e
    }

    public static var decoder: JSONDecoder { JSONDecoder() }
}
