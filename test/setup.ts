// Loads the Reflect polyfill that @peculiar/x509 needs before any test imports it.
import "reflect-metadata";
