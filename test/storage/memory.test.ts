// Runs the storage conformance suite on the in-memory driver.
import { memoryDriver } from "../../src/storage/memory.js";
import { testDriver } from "./conformance.js";

testDriver("memory", async () => ({ driver: memoryDriver() }));
