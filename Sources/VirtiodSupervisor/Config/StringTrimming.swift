extension String {
    /// Without leading and trailing whitespace (sysfs values end in a newline;
    /// configuration lines may be indented).
    func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let c = s.first, c.isWhitespace { s.removeFirst() }
        while let c = s.last, c.isWhitespace { s.removeLast() }
        return String(s)
    }
}
