// Runs the storage conformance suite inside workerd once more with 5-byte chunks, so nearly every value spans several SQLite rows.
import { testDriver } from "../storage/conformance.js";
import { remoteDriver, useHarness } from "./workerd.js";

const { harness, nextInstance } = useHarness("chunks");

testDriver("durable object (workerd, 5-byte chunks)", async () => ({ driver: remoteDriver(harness(), nextInstance(), 5) }));
